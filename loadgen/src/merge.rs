pub fn merge_command(_o: &crate::cli::MergeOpt) -> anyhow::Result<()> {
    todo!()
}
