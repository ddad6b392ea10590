/// The version every tool's `--version` prints. The VERSION file at the
/// repository root says the same (the Makefile names the release tarball and
/// the .deb after it); VersionTests fails when the two differ.
public let qbVersion = "0.9.0"
