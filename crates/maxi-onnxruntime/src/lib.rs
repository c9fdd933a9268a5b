//! ONNX Runtime model backend for maxi (library loaded at run time)
