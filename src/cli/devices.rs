//! `kiln devices`: every adapter wgpu can see, and which one kiln would pick.

use kiln_kernels::Gpu;

use super::Result;

pub fn run() -> Result<()> {
    let list = Gpu::adapters()?;
    if list.is_empty() {
        return Err(kiln_kernels::KernelError::NoAdapter {
            detail: String::new(),
        }
        .into());
    }
    for a in &list {
        println!("{a}");
        let l = &a.limits;
        println!(
            "    max storage binding {} MiB, max buffer {} MiB, workgroup {} invocations, \
             {} B shared memory",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_storage_size
        );
        let f = a.features;
        let on = |x: bool| if x { "yes" } else { "no" };
        println!(
            "    SHADER_F16 {}  SUBGROUP {}  TIMESTAMP_QUERY {}",
            on(f.contains(kiln_kernels::wgpu::Features::SHADER_F16)),
            on(f.contains(kiln_kernels::wgpu::Features::SUBGROUP)),
            on(f.contains(kiln_kernels::wgpu::Features::TIMESTAMP_QUERY)),
        );
    }
    let g = Gpu::new()?;
    println!(
        "kiln uses: {} ({:?}); set KILN_DEVICE=<index or name> or KILN_BACKEND=vulkan|metal|dx12|gl to choose",
        g.info().name,
        g.info().backend
    );
    Ok(())
}
