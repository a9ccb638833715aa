//! Command buffers recorded once and replayed: a list of dispatches (pipeline, buffers, push
//! constants, workgroup counts) becomes one command buffer with a barrier between dispatches and, when
//! the queue supports it, a timestamp pair around each, so every replay yields per-dispatch GPU times.

use std::marker::PhantomData;
use std::sync::Arc;

use ash::vk;

use super::device::Context;
use super::memory::Buffer;
use super::pipeline::ComputePipeline;
use super::vk_err;
use crate::error::{Error, Result};

/// Longest a replay may take before it is reported as hung (lavapipe is slow; real GPUs take ms).
const FENCE_TIMEOUT_NS: u64 = 300_000_000_000;

/// One dispatch: `buffers[i]` is bound at binding `i`; `push` fills the push-constant block.
pub struct Dispatch<'a> {
    pub label: String,
    pub pipeline: &'a ComputePipeline,
    pub buffers: Vec<&'a Buffer>,
    pub push: Vec<u8>,
    pub groups: (u32, u32, u32),
}

/// A recorded command buffer, replayable with `run`. It borrows its pipelines and buffers, so they
/// cannot be dropped while it exists.
pub struct Recorded<'a> {
    pool: vk::CommandPool,
    cmd: vk::CommandBuffer,
    descriptors: vk::DescriptorPool,
    queries: Option<(vk::QueryPool, f64, u64)>,
    fence: vk::Fence,
    labels: Vec<String>,
    ctx: Arc<Context>,
    _uses: PhantomData<&'a ()>,
}

impl<'a> Recorded<'a> {
    /// Records `dispatches` in order. Panics if a dispatch's buffer count or push size disagrees with
    /// its pipeline (a bug in the caller, not an input error).
    pub fn record(ctx: &Arc<Context>, dispatches: &[Dispatch<'a>]) -> Result<Recorded<'a>> {
        for d in dispatches {
            assert_eq!(d.buffers.len() as u32, d.pipeline.bindings, "dispatch `{}`: buffer count", d.label);
            assert_eq!(d.push.len() as u32, d.pipeline.push_bytes, "dispatch `{}`: push-constant bytes", d.label);
        }
        let dev = &ctx.device;
        let mut r = Recorded {
            pool: vk::CommandPool::null(),
            cmd: vk::CommandBuffer::null(),
            descriptors: vk::DescriptorPool::null(),
            queries: None,
            fence: vk::Fence::null(),
            labels: dispatches.iter().map(|d| d.label.clone()).collect(),
            ctx: ctx.clone(),
            _uses: PhantomData,
        };
        let n = dispatches.len().max(1) as u32;
        let buffers: u32 = dispatches.iter().map(|d| d.pipeline.bindings).sum::<u32>().max(1);
        // SAFETY: every handle is created on this device and stored in `r` at once, so `Drop` frees it.
        unsafe {
            r.pool = dev
                .create_command_pool(&vk::CommandPoolCreateInfo::default().queue_family_index(ctx.queue_family), None)
                .map_err(|e| vk_err("creating a command pool", e))?;
            r.cmd = dev
                .allocate_command_buffers(&vk::CommandBufferAllocateInfo::default().command_pool(r.pool).command_buffer_count(1))
                .map_err(|e| vk_err("allocating a command buffer", e))?[0];
            let sizes = [vk::DescriptorPoolSize { ty: vk::DescriptorType::STORAGE_BUFFER, descriptor_count: buffers }];
            r.descriptors = dev
                .create_descriptor_pool(&vk::DescriptorPoolCreateInfo::default().max_sets(n).pool_sizes(&sizes), None)
                .map_err(|e| vk_err("creating a descriptor pool", e))?;
            r.fence = dev.create_fence(&vk::FenceCreateInfo::default(), None).map_err(|e| vk_err("creating a fence", e))?;
            if let Some(period) = ctx.probe().timestamp_period_ns {
                let bits = ctx.instance.raw.get_physical_device_queue_family_properties(ctx.physical)[ctx.queue_family as usize]
                    .timestamp_valid_bits;
                if bits > 0 {
                    let info = vk::QueryPoolCreateInfo::default().query_type(vk::QueryType::TIMESTAMP).query_count(2 * n);
                    let pool = dev.create_query_pool(&info, None).map_err(|e| vk_err("creating a timestamp query pool", e))?;
                    let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
                    r.queries = Some((pool, period as f64, mask));
                }
            }
            r.write(dispatches)?;
        }
        Ok(r)
    }

    /// # Safety
    /// Called once from `record`, with every handle of `self` created.
    unsafe fn write(&mut self, dispatches: &[Dispatch<'a>]) -> Result<()> {
        let dev = &self.ctx.device;
        let cmd = self.cmd;
        // SAFETY: (whole block) handles are live and owned by `self`; infos point at locals.
        unsafe {
            dev.begin_command_buffer(cmd, &vk::CommandBufferBeginInfo::default()).map_err(|e| vk_err("beginning a command buffer", e))?;
            if let Some((pool, _, _)) = self.queries {
                dev.cmd_reset_query_pool(cmd, pool, 0, 2 * dispatches.len().max(1) as u32);
            }
            for (i, d) in dispatches.iter().enumerate() {
                let layouts = [d.pipeline.set_layout];
                let set = dev
                    .allocate_descriptor_sets(
                        &vk::DescriptorSetAllocateInfo::default().descriptor_pool(self.descriptors).set_layouts(&layouts),
                    )
                    .map_err(|e| vk_err(&format!("allocating descriptors for `{}`", d.label), e))?[0];
                let infos: Vec<[vk::DescriptorBufferInfo; 1]> =
                    d.buffers.iter().map(|b| [vk::DescriptorBufferInfo { buffer: b.raw, offset: 0, range: vk::WHOLE_SIZE }]).collect();
                let writes: Vec<vk::WriteDescriptorSet> = infos
                    .iter()
                    .enumerate()
                    .map(|(b, info)| {
                        vk::WriteDescriptorSet::default()
                            .dst_set(set)
                            .dst_binding(b as u32)
                            .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                            .buffer_info(info)
                    })
                    .collect();
                dev.update_descriptor_sets(&writes, &[]);
                if i > 0 {
                    // The next dispatch may read what the previous one wrote.
                    barrier(dev, cmd, vk::PipelineStageFlags::COMPUTE_SHADER, vk::AccessFlags::SHADER_READ | vk::AccessFlags::SHADER_WRITE);
                }
                if let Some((pool, _, _)) = self.queries {
                    dev.cmd_write_timestamp(cmd, vk::PipelineStageFlags::TOP_OF_PIPE, pool, 2 * i as u32);
                }
                dev.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, d.pipeline.raw);
                dev.cmd_bind_descriptor_sets(cmd, vk::PipelineBindPoint::COMPUTE, d.pipeline.layout, 0, &[set], &[]);
                if !d.push.is_empty() {
                    dev.cmd_push_constants(cmd, d.pipeline.layout, vk::ShaderStageFlags::COMPUTE, 0, &d.push);
                }
                dev.cmd_dispatch(cmd, d.groups.0, d.groups.1, d.groups.2);
                if let Some((pool, _, _)) = self.queries {
                    dev.cmd_write_timestamp(cmd, vk::PipelineStageFlags::BOTTOM_OF_PIPE, pool, 2 * i as u32 + 1);
                }
            }
            // Results become visible to host reads of mapped memory after the fence.
            barrier(dev, cmd, vk::PipelineStageFlags::HOST, vk::AccessFlags::HOST_READ);
            dev.end_command_buffer(cmd).map_err(|e| vk_err("ending a command buffer", e))
        }
    }

    /// Submits the recording and waits for it to finish.
    pub fn run(&self) -> Result<()> {
        let dev = &self.ctx.device;
        let cmds = [self.cmd];
        let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
        // SAFETY: the command buffer is complete, the fence unsignalled, the borrowed resources alive.
        unsafe {
            dev.reset_fences(&[self.fence]).map_err(|e| vk_err("resetting a fence", e))?;
            dev.queue_submit(self.ctx.queue, &submit, self.fence).map_err(|e| vk_err("submitting work", e))?;
            dev.wait_for_fences(&[self.fence], true, FENCE_TIMEOUT_NS).map_err(|e| match e {
                vk::Result::TIMEOUT => {
                    Error::Vulkan(format!("dispatches {:?} did not finish in {} s", self.labels, FENCE_TIMEOUT_NS / 1_000_000_000))
                }
                other => vk_err("waiting for dispatches", other),
            })
        }
    }

    /// GPU time of each dispatch of the last `run`, in milliseconds, by label (empty without timestamps).
    pub fn timings(&self) -> Result<Vec<(String, f64)>> {
        let Some((pool, period_ns, mask)) = self.queries else { return Ok(Vec::new()) };
        let mut ticks = vec![0u64; 2 * self.labels.len()];
        if ticks.is_empty() {
            return Ok(Vec::new());
        }
        // SAFETY: the queries were written by the completed submission.
        unsafe { self.ctx.device.get_query_pool_results(pool, 0, &mut ticks, vk::QueryResultFlags::TYPE_64 | vk::QueryResultFlags::WAIT) }
            .map_err(|e| vk_err("reading timestamps", e))?;
        Ok(self
            .labels
            .iter()
            .zip(ticks.chunks_exact(2))
            .map(|(l, t)| (l.clone(), ((t[1] & mask).wrapping_sub(t[0] & mask) & mask) as f64 * period_ns / 1e6))
            .collect())
    }
}

/// A global memory barrier from compute-shader writes to `dst_stage`/`dst_access`.
///
/// # Safety
/// `cmd` is recording on `dev`.
unsafe fn barrier(dev: &ash::Device, cmd: vk::CommandBuffer, dst_stage: vk::PipelineStageFlags, dst_access: vk::AccessFlags) {
    let mb = [vk::MemoryBarrier::default().src_access_mask(vk::AccessFlags::SHADER_WRITE).dst_access_mask(dst_access)];
    // SAFETY: guaranteed by the caller.
    unsafe {
        dev.cmd_pipeline_barrier(cmd, vk::PipelineStageFlags::COMPUTE_SHADER, dst_stage, vk::DependencyFlags::empty(), &mb, &[], &[])
    };
}

impl Drop for Recorded<'_> {
    fn drop(&mut self) {
        let dev = &self.ctx.device;
        // SAFETY: `run` waits for completion, so nothing is pending; null handles are ignored.
        unsafe {
            if let Some((pool, _, _)) = self.queries {
                dev.destroy_query_pool(pool, None);
            }
            dev.destroy_fence(self.fence, None);
            dev.destroy_descriptor_pool(self.descriptors, None);
            dev.destroy_command_pool(self.pool, None);
        }
    }
}
