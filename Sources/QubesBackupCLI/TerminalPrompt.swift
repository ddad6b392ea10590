#if canImport(Glibc)
import Glibc
#endif
import QubesBackup

/// Reads a passphrase from the controlling terminal with echo off — never
/// from standard input, which carries the backup.
public enum TerminalPrompt {
    public static func readPassphrase(prompt: String) throws(QBError) -> Secret? {
        let fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)
        if fd < 0 { return nil }
        defer { close(fd) }
        var saved = termios()
        guard tcgetattr(fd, &saved) == 0 else { return nil }
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        quiet.c_lflag |= tcflag_t(ICANON)
        let tty = FileDescriptor(rawValue: fd, name: "/dev/tty", owned: false)
        try tty.write(Array(prompt.utf8).span.bytes)
        guard tcsetattr(fd, TCSAFLUSH, &quiet) == 0 else { return nil }
        defer { _ = tcsetattr(fd, TCSAFLUSH, &saved) }
        let line = try PassphraseSource.firstLine(of: tty)
        try tty.write(Array("\n".utf8).span.bytes)
        return Secret(line)
    }
}
