//! gaga-converter: official checkpoint (torch zip / safetensors) -> `.gaga` model file.
