//! One TensorFlow Lite network (the `tflite` crate, TF Lite 1.15): loaded and checked once, then run many
//! times on a reused input buffer. Errors name the model file and the tensor, with expected and found.

use std::path::{Path, PathBuf};

use tflite::ops::builtin::BuiltinOpResolver;
use tflite::{FlatBufferModel, Interpreter, InterpreterBuilder};

use crate::error::{Error, Result};

/// A float32 network with one input and named outputs.
pub struct TfliteNet {
    interp: Interpreter<'static, BuiltinOpResolver>,
    file: PathBuf,
    input: i32,
    input_len: usize,
    /// (name, tensor index, element count) in the order the caller asked for them.
    outputs: Vec<(String, i32, usize)>,
}

/// An error about `file` (and a tensor in it).
pub(crate) fn model_err(file: &Path, what: impl Into<String>) -> Error {
    Error::Model { file: file.to_path_buf(), what: what.into() }
}

impl TfliteNet {
    /// Loads `file`, checks that its input has the shape `input_shape` and that it has outputs named
    /// `outputs` with the given element counts, and builds the interpreter (single-threaded: the tracker
    /// runs beside the renderer, which owns the other cores).
    pub fn open(file: &Path, input_shape: &[usize], outputs: &[(&str, usize)]) -> Result<Self> {
        if !file.is_file() {
            return Err(model_err(file, "model file not found (run scripts/fetch-assets.sh)"));
        }
        let model = FlatBufferModel::build_from_file(file).map_err(|e| model_err(file, format!("not a TF Lite model: {e}")))?;
        let builder = InterpreterBuilder::new(model, BuiltinOpResolver::default())
            .map_err(|e| model_err(file, format!("cannot build an interpreter: {e}")))?;
        let interp = builder.build_with_threads(1).map_err(|e| model_err(file, format!("cannot build an interpreter: {e}")))?;
        let inputs = interp.inputs().to_vec();
        let [input] = inputs[..] else {
            return Err(model_err(file, format!("expected 1 input tensor, found {}", inputs.len())));
        };
        let info = interp.tensor_info(input).ok_or_else(|| model_err(file, "input tensor has no info"))?;
        if info.dims != input_shape {
            return Err(model_err(file, format!("input tensor {:?}: expected shape {input_shape:?}, found {:?}", info.name, info.dims)));
        }
        check_f32(&interp, file, input, &info.name)?;
        let mut found = Vec::with_capacity(outputs.len());
        for &(name, len) in outputs {
            // Output indices come in file order, so they are matched by name, not position.
            let hit = interp.outputs().iter().copied().find(|&i| interp.tensor_info(i).is_some_and(|t| t.name == name));
            let index = hit.ok_or_else(|| {
                let names: Vec<String> = interp.outputs().iter().filter_map(|&i| interp.tensor_info(i).map(|t| t.name)).collect();
                model_err(file, format!("output tensor {name:?} not found; outputs are {names:?}"))
            })?;
            let n: usize = interp.tensor_info(index).map_or(0, |t| t.dims.iter().product());
            if n != len {
                return Err(model_err(file, format!("output tensor {name:?}: expected {len} values, found {n}")));
            }
            check_f32(&interp, file, index, name)?;
            found.push((name.to_string(), index, len));
        }
        Ok(TfliteNet { interp, file: file.to_path_buf(), input, input_len: input_shape.iter().product(), outputs: found })
    }

    /// The model file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The input tensor to fill (NHWC float32).
    pub fn input_mut(&mut self) -> Result<&mut [f32]> {
        let file = self.file.clone();
        let n = self.input_len;
        let data = self.interp.tensor_data_mut::<f32>(self.input).map_err(|e| model_err(&file, format!("input tensor: {e}")))?;
        let found = data.len();
        data.get_mut(..n).ok_or_else(|| model_err(&file, format!("input tensor: expected {n} values, found {found}")))
    }

    /// Runs the network.
    pub fn invoke(&mut self) -> Result<()> {
        let file = self.file.clone();
        self.interp.invoke().map_err(|e| model_err(&file, format!("inference failed: {e}")))
    }

    /// Output `k` (in the order given to [`TfliteNet::open`]) after [`TfliteNet::invoke`].
    pub fn output(&self, k: usize) -> Result<&[f32]> {
        let (name, index, len) = self.outputs.get(k).ok_or_else(|| model_err(&self.file, format!("no output number {k}")))?;
        let data = self.interp.tensor_data::<f32>(*index).map_err(|e| model_err(&self.file, format!("output tensor {name:?}: {e}")))?;
        data.get(..*len)
            .ok_or_else(|| model_err(&self.file, format!("output tensor {name:?}: expected {len} values, found {}", data.len())))
    }
}

fn check_f32(interp: &Interpreter<'static, BuiltinOpResolver>, file: &Path, index: i32, name: &str) -> Result<()> {
    match interp.tensor_data::<f32>(index) {
        Ok(_) => Ok(()),
        Err(e) => Err(model_err(file, format!("tensor {name:?}: expected float32 ({e})"))),
    }
}
