//! Loads dynamic maxi plugins (.so) over the versioned C ABI and registers their components
