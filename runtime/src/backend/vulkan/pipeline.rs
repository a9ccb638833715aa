//! Compute pipelines from shipped SPIR-V: the words are checked (length, magic, byte order) before
//! use, specialization constants are applied, and every binding is a storage buffer.

use std::sync::Arc;

use ash::vk;
use gaga_kernels::twin::SpecValue;

use super::cache::PipelineCache;
use super::device::Context;
use super::vk_err;
use crate::error::{Error, Result};

const SPIRV_MAGIC: u32 = 0x0723_0203;

/// SPIR-V bytes as words, after checking length, magic number and byte order. `name` is for errors.
pub fn spirv_words(name: &str, bytes: &[u8]) -> Result<Vec<u32>> {
    let chunks = bytes.chunks_exact(4);
    if !chunks.remainder().is_empty() || bytes.len() < 20 {
        return Err(Error::Vulkan(format!("shader `{name}`: {} bytes, expected a multiple of 4 and at least 20", bytes.len())));
    }
    let mut words: Vec<u32> = chunks.map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    match words[0] {
        SPIRV_MAGIC => {}
        m if m.swap_bytes() == SPIRV_MAGIC => words.iter_mut().for_each(|w| *w = w.swap_bytes()),
        m => return Err(Error::Vulkan(format!("shader `{name}`: magic {m:#010x}, expected {SPIRV_MAGIC:#010x}"))),
    }
    Ok(words)
}

/// A compute pipeline whose bindings `0..bindings` of set 0 are storage buffers, with a push-constant
/// block of `push_bytes`.
pub struct ComputePipeline {
    pub(crate) raw: vk::Pipeline,
    pub(crate) layout: vk::PipelineLayout,
    pub(crate) set_layout: vk::DescriptorSetLayout,
    pub(crate) bindings: u32,
    pub(crate) push_bytes: u32,
    name: String,
    ctx: Arc<Context>,
}

impl ComputePipeline {
    /// Builds `main` of `spirv` with `spec` as constants `0..spec.len()`, through `cache`.
    pub fn new(
        ctx: &Arc<Context>,
        cache: &PipelineCache,
        name: &str,
        spirv: &[u8],
        spec: &[SpecValue],
        bindings: u32,
        push_bytes: u32,
    ) -> Result<ComputePipeline> {
        let words = spirv_words(name, spirv)?;
        if push_bytes > ctx.probe().max_push_constants {
            return Err(Error::Vulkan(format!(
                "shader `{name}`: {push_bytes} bytes of push constants, the device allows {}",
                ctx.probe().max_push_constants
            )));
        }
        let d = &ctx.device;
        let binding_list: Vec<vk::DescriptorSetLayoutBinding> = (0..bindings)
            .map(|b| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(b)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .descriptor_count(1)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
            })
            .collect();
        let fail = |what: &str, e| vk_err(&format!("shader `{name}`: {what}"), e);
        // Each object is wrapped in the struct as soon as it exists, so `Drop` cleans up on any error.
        let mut p = ComputePipeline {
            raw: vk::Pipeline::null(),
            layout: vk::PipelineLayout::null(),
            set_layout: vk::DescriptorSetLayout::null(),
            bindings,
            push_bytes,
            name: name.to_string(),
            ctx: ctx.clone(),
        };
        // SAFETY: create infos point at locals; the objects are destroyed in `Drop`.
        unsafe {
            p.set_layout = d
                .create_descriptor_set_layout(&vk::DescriptorSetLayoutCreateInfo::default().bindings(&binding_list), None)
                .map_err(|e| fail("descriptor set layout", e))?;
            let ranges = [vk::PushConstantRange::default().stage_flags(vk::ShaderStageFlags::COMPUTE).size(push_bytes)];
            let set_layouts = [p.set_layout];
            let mut layout_info = vk::PipelineLayoutCreateInfo::default().set_layouts(&set_layouts);
            if push_bytes > 0 {
                layout_info = layout_info.push_constant_ranges(&ranges);
            }
            p.layout = d.create_pipeline_layout(&layout_info, None).map_err(|e| fail("pipeline layout", e))?;
            let module =
                d.create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&words), None).map_err(|e| fail("shader module", e))?;
            let data: Vec<u8> = spec.iter().flat_map(|v| v.to_bytes()).collect();
            let entries: Vec<vk::SpecializationMapEntry> =
                (0..spec.len() as u32).map(|i| vk::SpecializationMapEntry::default().constant_id(i).offset(4 * i).size(4)).collect();
            let spec_info = vk::SpecializationInfo::default().map_entries(&entries).data(&data);
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(c"main")
                .specialization_info(&spec_info);
            let info = [vk::ComputePipelineCreateInfo::default().stage(stage).layout(p.layout)];
            let created = d.create_compute_pipelines(cache.raw, &info, None);
            d.destroy_shader_module(module, None);
            p.raw = created.map_err(|(_, e)| fail("compute pipeline", e))?[0];
        }
        Ok(p)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ComputePipeline {
    fn drop(&mut self) {
        let d = &self.ctx.device;
        // SAFETY: recordings that use this pipeline borrow it, so none is pending; null handles are ignored.
        unsafe {
            d.destroy_pipeline(self.raw, None);
            d.destroy_pipeline_layout(self.layout, None);
            d.destroy_descriptor_set_layout(self.set_layout, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_shaders_pass_the_spirv_header_check() {
        for (name, bytes) in [
            ("conv2d", gaga_kernels::twin::CONV2D_SPV),
            ("bilinear", gaga_kernels::twin::BILINEAR_SPV),
            ("elementwise", gaga_kernels::twin::ELEMENTWISE_SPV),
        ] {
            assert!(spirv_words(name, bytes).is_ok(), "{name}");
        }
    }

    #[test]
    fn truncated_or_foreign_spirv_is_refused_by_name() {
        let err = spirv_words("bad", &[1, 2, 3]).expect_err("short");
        assert!(err.to_string().contains("`bad`: 3 bytes"), "{err}");
        let err = spirv_words("png", &[0x89, b'P', b'N', b'G', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).expect_err("magic");
        assert!(err.to_string().contains("magic"), "{err}");
    }

    #[test]
    fn big_endian_spirv_is_swapped() {
        let be: Vec<u8> = [SPIRV_MAGIC, 0x0001_0300, 0, 8, 0].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(spirv_words("be", &be).ok().map(|w| w[0]), Some(SPIRV_MAGIC));
    }
}
