pub fn compare_command(_o: &crate::cli::CompareOpt) -> anyhow::Result<bool> {
    todo!()
}
