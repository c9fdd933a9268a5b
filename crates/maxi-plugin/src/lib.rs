//! SDK for third-party maxi components: static (inventory) or dynamic (versioned C ABI)
