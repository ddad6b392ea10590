import ArgumentParser
import QubesBackup

/// `--passphrase SOURCE`, the same in every tool.
public struct PassphraseOptions: ParsableArguments {
    @Option(name: .customLong("passphrase"), help: ArgumentHelp(
        "Where to read the passphrase: env:VAR, file:PATH (first line), fd:N (first line) or pass:TEXT (visible to other users). Default: ask on the terminal.",
        valueName: "source"))
    public var source: String?

    public init() {}

    /// Reads the passphrase from the chosen source, or prompts on the terminal.
    /// Without a terminal and without `--passphrase` this is a usage error
    /// that says how to give one.
    public func read(prompt: String = "Backup passphrase: ") throws -> Secret {
        if let source {
            let parsed = try PassphraseSource(parsing: source)
            if parsed.isVisibleToOtherUsers {
                Diagnostics.warning("pass:TEXT puts the passphrase where other users can see it (ps, /proc); prefer env:VAR, file:PATH or fd:N")
            }
            return try parsed.read()
        }
        if let secret = try TerminalPrompt.readPassphrase(prompt: prompt) {
            if secret.count == 0 { throw QBError(.usage, "the passphrase is empty", subject: "passphrase") }
            return secret
        }
        throw QBError(.usage, "no terminal to ask for the passphrase", subject: "passphrase",
                      hint: "give one with --passphrase env:VAR, file:PATH or fd:N")
    }
}
