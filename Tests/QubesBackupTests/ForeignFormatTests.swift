import Testing
@testable import QubesBackup

/// Signatures no program here can write without root: an LVM physical
/// volume's label (pvcreate needs a block device), in any of the first
/// four sectors, and what must not be taken for one.
@Suite struct ForeignFormatTests {
    static func label(inSector sector: Int, type: String = "LVM2 001") -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: ForeignFormat.probeLength)
        let at = sector * 512
        bytes.replaceSubrange(at..<(at + 8), with: Array("LABELONE".utf8))
        bytes.replaceSubrange((at + 24)..<(at + 32), with: Array(type.utf8))
        return bytes
    }

    @Test(arguments: 0..<4)
    func lvmLabelsAreFoundInTheFirstFourSectors(sector: Int) {
        #expect(ForeignFormat.identify(Self.label(inSector: sector))?.name == "LVM physical volume")
    }

    @Test func otherLabelsAndLaterSectorsAreNot() {
        #expect(ForeignFormat.identify(Self.label(inSector: 4)) == nil)
        #expect(ForeignFormat.identify(Self.label(inSector: 1, type: "LVM1 001")) == nil)
        #expect(ForeignFormat.identify([UInt8](repeating: 0, count: ForeignFormat.probeLength)) == nil)
        // Shorter than a signature's offset: nothing read past the end.
        #expect(ForeignFormat.identify(Array("LUKS".utf8)) == nil)
    }
}
