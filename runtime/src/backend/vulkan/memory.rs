//! Device memory under one budget. Every buffer goes through gpu-allocator with a name; a request that
//! would exceed the budget declared at session open fails with the bytes needed, the budget and the
//! largest holders by name; `report` lists what is held, by name.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use ash::vk;
use gpu_allocator::vulkan::{Allocation, AllocationCreateDesc, AllocationScheme, Allocator, AllocatorCreateDesc};
pub use gpu_allocator::MemoryLocation;

use super::device::Context;
use super::vk_err;
use crate::backend::Budget;
use crate::error::{Error, Result};

/// gpu-allocator's block size: the most a memory type can hold reserved beyond its live allocations.
pub const BLOCK_BYTES: u64 = 16 << 20;

struct State {
    allocator: Allocator,
    budget: Budget,
    used: u64,
    /// Live allocations: name and bytes charged to the budget.
    holders: Vec<(u64, String, u64)>,
    next_id: u64,
}

/// The budgeted allocator of one session. Cheap to clone; buffers keep it alive.
#[derive(Clone)]
pub struct Memory {
    // Declared before `ctx`: the allocator frees its blocks before the last Arc to the device can go.
    state: Arc<Mutex<State>>,
    ctx: Arc<Context>,
}

/// Bytes held per name against the budget, largest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryReport {
    pub budget: u64,
    /// Bytes charged to the budget (the sum of `holders`).
    pub used: u64,
    /// Device memory gpu-allocator holds in blocks, live or not.
    pub reserved: u64,
    pub holders: Vec<(String, u64)>,
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

impl fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let budget = if self.budget == u64::MAX { "unlimited".into() } else { human(self.budget) };
        writeln!(f, "device memory: {} used of {budget} ({} reserved in blocks)", human(self.used), human(self.reserved))?;
        for (name, bytes) in &self.holders {
            writeln!(f, "  {:>10}  {name}", human(*bytes))?;
        }
        Ok(())
    }
}

/// The `n` largest holders as "name size, ..." for an error message.
pub fn largest_holders(holders: &[(String, u64)], n: usize) -> String {
    let mut sorted: Vec<&(String, u64)> = holders.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let list: Vec<String> = sorted.iter().take(n).map(|(name, b)| format!("{name} {}", human(*b))).collect();
    if list.is_empty() {
        "nothing allocated".into()
    } else {
        list.join(", ")
    }
}

/// Whether `needed` more bytes fit; otherwise the error naming the request, budget and largest holders.
pub fn check_budget(name: &str, needed: u64, used: u64, budget: Budget, holders: &[(String, u64)]) -> Result<()> {
    if used.checked_add(needed).is_some_and(|total| total <= budget.bytes) {
        return Ok(());
    }
    Err(Error::OverBudget { name: name.into(), needed, used, budget: budget.bytes, largest: largest_holders(holders, 3) })
}

impl State {
    fn named(&self) -> Vec<(String, u64)> {
        self.holders.iter().map(|(_, n, b)| (n.clone(), *b)).collect()
    }
}

impl Memory {
    /// An allocator charging every allocation to `budget`.
    pub fn new(ctx: &Arc<Context>, budget: Budget) -> Result<Memory> {
        let allocator = Allocator::new(&AllocatorCreateDesc {
            instance: ctx.instance.raw.clone(),
            device: ctx.device.clone(),
            physical_device: ctx.physical,
            debug_settings: Default::default(),
            buffer_device_address: false,
            // Small blocks keep reserved-but-unused memory near the budget (the default 256 MiB device
            // blocks would overshoot a Jetson-sized budget); larger requests get dedicated memory.
            allocation_sizes: gpu_allocator::AllocationSizes::new(BLOCK_BYTES, BLOCK_BYTES),
        })
        .map_err(|e| Error::Vulkan(format!("creating the memory allocator: {e}")))?;
        let state = State { allocator, budget, used: 0, holders: Vec::new(), next_id: 0 };
        Ok(Memory { state: Arc::new(Mutex::new(state)), ctx: ctx.clone() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the tallies consistent (they are updated last).
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What is held, by name, largest first.
    pub fn report(&self) -> MemoryReport {
        let s = self.lock();
        let mut holders = s.named();
        holders.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        MemoryReport { budget: s.budget.bytes, used: s.used, reserved: s.allocator.capacity(), holders }
    }

    /// A storage buffer of `bytes` (rounded up to 4) named `name`, in `location`
    /// (`CpuToGpu` for uploads, `GpuToCpu` for readback, `GpuOnly` for device-resident data).
    pub fn buffer(&self, name: &str, bytes: u64, location: MemoryLocation) -> Result<Buffer> {
        let size = bytes.max(4).div_ceil(4) * 4;
        let max = self.ctx.probe().max_storage_buffer_range as u64;
        if size > max {
            return Err(Error::Vulkan(format!(
                "buffer `{name}`: {size} bytes exceed the device's {max}-byte storage-buffer range; split it with plan_chunks"
            )));
        }
        let usage = vk::BufferUsageFlags::STORAGE_BUFFER | vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST;
        let info = vk::BufferCreateInfo::default().size(size).usage(usage).sharing_mode(vk::SharingMode::EXCLUSIVE);
        let device = &self.ctx.device;
        // SAFETY: a valid create info on a live device.
        let raw = unsafe { device.create_buffer(&info, None) }.map_err(|e| vk_err(&format!("creating buffer `{name}`"), e))?;
        // SAFETY: `raw` was just created on this device.
        let requirements = unsafe { device.get_buffer_memory_requirements(raw) };
        let mut s = self.lock();
        let charged = requirements.size;
        let allocation = check_budget(name, charged, s.used, s.budget, &s.named()).and_then(|()| {
            s.allocator
                .allocate(&AllocationCreateDesc {
                    name,
                    requirements,
                    location,
                    linear: true,
                    allocation_scheme: AllocationScheme::GpuAllocatorManaged,
                })
                .map_err(|e| Error::Vulkan(format!("allocating {charged} bytes for `{name}`: {e}")))
        });
        let allocation = match allocation {
            Ok(a) => a,
            Err(e) => {
                // SAFETY: the buffer is unbound and unused.
                unsafe { device.destroy_buffer(raw, None) };
                return Err(e);
            }
        };
        // SAFETY: the allocation satisfies `requirements` of `raw`.
        if let Err(e) = unsafe { device.bind_buffer_memory(raw, allocation.memory(), allocation.offset()) } {
            let _ = s.allocator.free(allocation);
            // SAFETY: as above.
            unsafe { device.destroy_buffer(raw, None) };
            return Err(vk_err(&format!("binding memory to `{name}`"), e));
        }
        let id = s.next_id;
        s.next_id += 1;
        s.used += charged;
        s.holders.push((id, name.to_string(), charged));
        drop(s);
        let allocation = Some(allocation);
        Ok(Buffer {
            raw,
            size,
            id,
            name: name.to_string(),
            allocation,
            imported: vk::DeviceMemory::null(),
            memory: self.clone(),
            _not_sync: PhantomData,
        })
    }

    /// A read-only storage buffer over `bytes` in host memory, imported with `VK_EXT_external_memory_host`
    /// (no copy): the pages around `bytes` (rounded to the device's import alignment) become device
    /// memory and the buffer is bound at the offset of `bytes` inside them. The rounded span is charged
    /// to the budget. `Ok(None)` when the device cannot import this span (no extension, no suitable
    /// memory type, misaligned offset): the caller copies instead.
    ///
    /// # Safety
    /// `bytes` must stay alive and unchanged until the returned buffer is dropped.
    pub unsafe fn import_host(&self, name: &str, bytes: &[u8]) -> Result<Option<Buffer>> {
        let (Some(ext), Some(align)) = (self.ctx.host_import.as_ref(), self.ctx.probe().external_memory_host) else { return Ok(None) };
        let Some(span) = import_span(bytes.as_ptr() as usize, bytes.len(), align) else { return Ok(None) };
        let size = (bytes.len() as u64).max(4).div_ceil(4) * 4;
        if size > span.len - span.offset || size > self.ctx.probe().max_storage_buffer_range as u64 {
            return Ok(None);
        }
        let device = &self.ctx.device;
        let handle = vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT;
        let host_ptr = span.start as *mut std::ffi::c_void;
        let mut props = vk::MemoryHostPointerPropertiesEXT::default();
        // SAFETY: `host_ptr` is aligned to the device's import alignment and points at mapped pages.
        let r = unsafe { (ext.fp().get_memory_host_pointer_properties_ext)(device.handle(), handle, host_ptr, &mut props) };
        if r != vk::Result::SUCCESS {
            return Ok(None);
        }
        let mut external = vk::ExternalMemoryBufferCreateInfo::default().handle_types(handle);
        let usage = vk::BufferUsageFlags::STORAGE_BUFFER | vk::BufferUsageFlags::TRANSFER_SRC;
        let info =
            vk::BufferCreateInfo::default().size(size).usage(usage).sharing_mode(vk::SharingMode::EXCLUSIVE).push_next(&mut external);
        // SAFETY: a valid create info on a live device.
        let raw = unsafe { device.create_buffer(&info, None) }.map_err(|e| vk_err(&format!("creating imported buffer `{name}`"), e))?;
        // SAFETY: `raw` was just created on this device.
        let req = unsafe { device.get_buffer_memory_requirements(raw) };
        let types = req.memory_type_bits & props.memory_type_bits;
        if types == 0 || span.offset % req.alignment.max(1) != 0 || req.size > span.len - span.offset {
            // SAFETY: unbound and unused.
            unsafe { device.destroy_buffer(raw, None) };
            return Ok(None);
        }
        let mut s = self.lock();
        if let Err(e) = check_budget(name, span.len, s.used, s.budget, &s.named()) {
            // SAFETY: as above.
            unsafe { device.destroy_buffer(raw, None) };
            return Err(e);
        }
        let mut import = vk::ImportMemoryHostPointerInfoEXT::default().handle_type(handle).host_pointer(host_ptr);
        let alloc =
            vk::MemoryAllocateInfo::default().allocation_size(span.len).memory_type_index(types.trailing_zeros()).push_next(&mut import);
        // SAFETY: the pointer, size and memory type were validated above; the caller keeps the pages alive.
        let memory = match unsafe { device.allocate_memory(&alloc, None) } {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: as above.
                unsafe { device.destroy_buffer(raw, None) };
                log::info!("importing `{name}` ({} bytes) failed ({e:?}); copying instead", span.len);
                return Ok(None);
            }
        };
        // SAFETY: the offset satisfies the buffer's alignment and the memory covers offset + size.
        if let Err(e) = unsafe { device.bind_buffer_memory(raw, memory, span.offset) } {
            // SAFETY: nothing uses either object yet.
            unsafe {
                device.destroy_buffer(raw, None);
                device.free_memory(memory, None);
            }
            return Err(vk_err(&format!("binding imported memory to `{name}`"), e));
        }
        let id = s.next_id;
        s.next_id += 1;
        s.used += span.len;
        s.holders.push((id, name.to_string(), span.len));
        drop(s);
        Ok(Some(Buffer {
            raw,
            size,
            id,
            name: name.to_string(),
            allocation: None,
            imported: memory,
            memory: self.clone(),
            _not_sync: PhantomData,
        }))
    }
}

/// Pages to import for `len` bytes at address `ptr`: start rounded down and end rounded up to `align`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportSpan {
    pub start: usize,
    pub len: u64,
    /// Where the bytes begin inside the span.
    pub offset: u64,
}

/// The import span of `len` bytes at `ptr`, or `None` for a zero or non-power-of-two alignment or an
/// address overflow.
pub fn import_span(ptr: usize, len: usize, align: u64) -> Option<ImportSpan> {
    if align == 0 || !align.is_power_of_two() || len == 0 {
        return None;
    }
    let a = usize::try_from(align).ok()?;
    let start = ptr & !(a - 1);
    let end = ptr.checked_add(len)?.checked_add(a - 1)? & !(a - 1);
    Some(ImportSpan { start, len: (end - start) as u64, offset: (ptr - start) as u64 })
}

/// A named storage buffer; frees its memory and leaves the budget when dropped.
pub struct Buffer {
    pub(crate) raw: vk::Buffer,
    size: u64,
    id: u64,
    name: String,
    allocation: Option<Allocation>,
    /// Imported host memory (`import_host`), owned by the buffer; null otherwise.
    imported: vk::DeviceMemory,
    memory: Memory,
    // Not `Sync`: `write` and `read` go through the mapping with `&self`.
    _not_sync: PhantomData<Cell<()>>,
}

impl Buffer {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size in bytes (what shaders may address).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The mapped bytes of a host-visible buffer.
    fn mapped(&self) -> Result<(*mut u8, usize)> {
        let ptr = self.allocation.as_ref().and_then(|a| a.mapped_ptr().map(|p| (p.as_ptr().cast::<u8>(), a.size() as usize)));
        ptr.ok_or_else(|| Error::Vulkan(format!("buffer `{}` is not host-visible; copy through a staging buffer", self.name)))
    }

    /// Copies `data` (f32, f16, u32, ...) to the start of a host-visible buffer. Takes `&self` so a
    /// buffer borrowed by a `Recorded` can be refilled between replays (`Recorded::run` waits, so the
    /// GPU is not using it).
    pub fn write<T: bytemuck::Pod>(&self, data: &[T]) -> Result<()> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let (ptr, len) = self.mapped()?;
        if bytes.len() as u64 > self.size.min(len as u64) {
            return Err(Error::Vulkan(format!("buffer `{}`: writing {} bytes into {}", self.name, bytes.len(), self.size)));
        }
        // SAFETY: the mapping is at least `len` bytes long and lives as long as the allocation; the
        // buffer is not `Sync` and the GPU is idle between `run`s, so nothing else touches it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
        Ok(())
    }

    /// Reads `out.len()` values from the start of a host-visible buffer.
    pub fn read<T: bytemuck::Pod>(&self, out: &mut [T]) -> Result<()> {
        let want = std::mem::size_of_val(out);
        let (ptr, len) = self.mapped()?;
        if want as u64 > self.size.min(len as u64) {
            return Err(Error::Vulkan(format!("buffer `{}`: reading {want} bytes from {}", self.name, self.size)));
        }
        // SAFETY: as in `write`.
        unsafe { std::ptr::copy_nonoverlapping(ptr, bytemuck::cast_slice_mut::<T, u8>(out).as_mut_ptr(), want) };
        Ok(())
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let mut s = self.memory.lock();
        if let Some(a) = self.allocation.take() {
            if let Err(e) = s.allocator.free(a) {
                log::error!("freeing buffer `{}`: {e}", self.name);
            }
        }
        // SAFETY: callers wait for the GPU before dropping buffers it uses (`Recorded` borrows them);
        // imported memory is freed after the buffer bound to it.
        unsafe {
            self.memory.ctx.device.destroy_buffer(self.raw, None);
            if self.imported != vk::DeviceMemory::null() {
                self.memory.ctx.device.free_memory(self.imported, None);
            }
        }
        if let Some(pos) = s.holders.iter().position(|(id, _, _)| *id == self.id) {
            let (_, _, bytes) = s.holders.swap_remove(pos);
            s.used -= bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_within_budget_passes() {
        assert!(check_budget("a", 10, 80, Budget { bytes: 90 }, &[]).is_ok());
    }

    #[test]
    fn over_budget_names_the_request_and_the_largest_holders() {
        let holders =
            vec![("small".to_string(), 1 << 10), ("refiner activations".to_string(), 96 << 20), ("weights".to_string(), 60 << 20)];
        let err = check_budget("splat image", 40 << 20, 157 << 20, Budget { bytes: 160 << 20 }, &holders).expect_err("over");
        let text = err.to_string();
        assert!(text.contains("splat image") && text.contains(&(40u64 << 20).to_string()), "{text}");
        assert!(text.contains(&(160u64 << 20).to_string()), "{text}");
        assert!(text.contains("refiner activations 96.0 MiB, weights 60.0 MiB, small 1.0 KiB"), "{text}");
    }

    #[test]
    fn an_import_span_covers_whole_pages_around_the_bytes() {
        let s = import_span(4096 * 3 + 256, 10_000, 4096).expect("span");
        assert_eq!(s, ImportSpan { start: 4096 * 3, len: 4096 * 3, offset: 256 });
        assert_eq!(import_span(8192, 4096, 4096).map(|s| (s.len, s.offset)), Some((4096, 0)));
        assert_eq!(import_span(100, 10, 3000), None, "alignment must be a power of two");
        assert_eq!(import_span(usize::MAX - 10, 100, 4096), None, "overflow");
    }

    #[test]
    fn an_unlimited_budget_never_overflows() {
        assert!(check_budget("a", u64::MAX / 2, u64::MAX / 2, Budget::UNLIMITED, &[]).is_ok());
        assert!(check_budget("a", u64::MAX, 1, Budget::UNLIMITED, &[]).is_err());
    }
}
