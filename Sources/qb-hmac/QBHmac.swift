import ArgumentParser
import QubesBackup
import QubesBackupCLI

@main
struct QBHmac: QBCommand {
    @Argument var file: String?
    func run() throws {
        throw QBError(.malformed, "test", subject: file)
    }
}
