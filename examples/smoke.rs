fn main() -> kiln::Result<()> {
    let gpu = kiln::device()?;
    println!("{:?} features {:?}", gpu.info(), gpu.features());
    let x =
        kiln::Tensor::from_slice(&[1.0f32, -2.0, 3.0, 4.0, -5.0, 6.0], &[2, 3])?.requires_grad();
    let y = x.relu()?.mul(&x)?.sum()?;
    println!("y = {}", y.item()?);
    y.backward()?;
    println!("grad = {:?}", x.grad().unwrap().to_vec::<f32>()?);
    let m = x.max_dims(&[1], false)?;
    println!(
        "max rows = {:?} argmax {:?}",
        m.to_vec::<f32>()?,
        x.argmax(1, false)?.to_vec::<u32>()?
    );
    println!(
        "xt sum0 = {:?}",
        x.t()?.sum_dims(&[0], false)?.to_vec::<f32>()?
    );
    Ok(())
}
