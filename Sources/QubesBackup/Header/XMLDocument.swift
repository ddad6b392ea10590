/// A deliberately small, non-validating XML reader for `qubes.xml`: elements,
/// attributes, text, comments, processing instructions and CDATA. A DOCTYPE is
/// refused outright, so no entity — external or internal — can be declared:
/// no network, no file access, no entity-expansion bomb (FORMAT.md §9). Only
/// the five predefined entities and numeric character references are decoded.
public struct XMLElement: Sendable {
    public var name: String
    public var attributes: [String: String]
    public var children: [XMLElement]
    /// The element's own text, concatenated.
    public var text: String

    public func attribute(_ name: String) -> String? { attributes[name] }
    public func children(named name: String) -> [XMLElement] { children.filter { $0.name == name } }
    public func child(named name: String) -> XMLElement? { children.first { $0.name == name } }
}

public enum XMLDocument {
    /// qubes.xml of a large installation is a few hundred KiB.
    public static let maximumSize = 1 << 20
    /// Nesting deeper than this is hostile, not Qubes.
    public static let maximumDepth = 64

    /// Parses a whole document and returns its root element.
    public static func parse(_ bytes: [UInt8], subject: String = "qubes.xml") throws(QBError) -> XMLElement {
        if bytes.count > maximumSize {
            throw QBError(.limitExceeded, "XML document is larger than \(maximumSize) bytes", subject: subject)
        }
        var parser = Parser(bytes: bytes, subject: subject)
        return try parser.document()
    }

    private struct Parser {
        let bytes: [UInt8]
        let subject: String
        var i = 0

        init(bytes: [UInt8], subject: String) {
            self.bytes = bytes
            self.subject = subject
            // A UTF-8 byte-order mark is allowed before the prolog.
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }
        }

        func error(_ message: String) -> QBError {
            QBError(.malformed, "invalid XML at byte \(i): \(message)", subject: subject)
        }

        func peek(_ s: String) -> Bool { bytes[i...].starts(with: s.utf8) }

        mutating func skipSpace() {
            while i < bytes.count, isXMLSpace(bytes[i]) { i += 1 }
        }

        mutating func skip(past terminator: String) throws(QBError) {
            let t = Array(terminator.utf8)
            while i + t.count <= bytes.count {
                if bytes[i..<(i + t.count)].elementsEqual(t) { i += t.count; return }
                i += 1
            }
            throw error("unterminated construct, expected '\(terminator)'")
        }

        /// Comments, processing instructions and white space between elements.
        mutating func skipMisc() throws(QBError) {
            while true {
                skipSpace()
                if peek("<?") { try skip(past: "?>") }
                else if peek("<!--") { try skip(past: "-->") }
                else if peek("<!DOCTYPE") || peek("<!doctype") {
                    throw QBError(.unsupported, "XML with a DOCTYPE is refused (entities are never expanded)", subject: subject)
                } else { return }
            }
        }

        mutating func document() throws(QBError) -> XMLElement {
            try skipMisc()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "<") else { throw error("no root element") }
            let root = try element(depth: 0)
            try skipMisc()
            guard i == bytes.count else { throw error("content after the root element") }
            return root
        }

        mutating func name() throws(QBError) -> String {
            let start = i
            while i < bytes.count {
                let c = bytes[i]
                if isXMLSpace(c) || nameTerminators.contains(c) { break }
                i += 1
            }
            guard i > start else { throw error("expected a name") }
            return String(decoding: bytes[start..<i], as: UTF8.self)
        }

        mutating func element(depth: Int) throws(QBError) -> XMLElement {
            guard depth < XMLDocument.maximumDepth else {
                throw QBError(.limitExceeded, "XML nested deeper than \(XMLDocument.maximumDepth) levels", subject: subject)
            }
            i += 1 // "<"
            var element = XMLElement(name: try name(), attributes: [:], children: [], text: "")
            while true {
                skipSpace()
                guard i < bytes.count else { throw QBError(.truncated, "XML ends inside a tag", subject: subject) }
                if bytes[i] == UInt8(ascii: "/") {
                    guard i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: ">") else { throw error("expected '/>'") }
                    i += 2
                    return element
                }
                if bytes[i] == UInt8(ascii: ">") { i += 1; break }
                let key = try name()
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "=") else { throw error("expected '=' after attribute \(key)") }
                i += 1
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") || bytes[i] == UInt8(ascii: "'") else {
                    throw error("attribute value must be quoted")
                }
                let quote = bytes[i]
                i += 1
                let start = i
                while i < bytes.count, bytes[i] != quote {
                    if bytes[i] == UInt8(ascii: "<") { throw error("'<' in attribute value") }
                    i += 1
                }
                guard i < bytes.count else { throw QBError(.truncated, "XML ends inside an attribute", subject: subject) }
                let value = try decode(bytes[start..<i])
                i += 1
                guard element.attributes[key] == nil else { throw error("duplicate attribute \(key)") }
                element.attributes[key] = value
            }
            // Content until the matching end tag.
            while true {
                guard i < bytes.count else { throw QBError(.truncated, "XML ends inside <\(element.name)>", subject: subject) }
                if peek("</") {
                    i += 2
                    let closing = try name()
                    skipSpace()
                    guard closing == element.name, i < bytes.count, bytes[i] == UInt8(ascii: ">") else {
                        throw error("</\(closing)> does not close <\(element.name)>")
                    }
                    i += 1
                    return element
                } else if peek("<!--") {
                    try skip(past: "-->")
                } else if peek("<![CDATA[") {
                    i += 9
                    let start = i
                    try skip(past: "]]>")
                    element.text += String(decoding: bytes[start..<(i - 3)], as: UTF8.self)
                } else if peek("<?") {
                    try skip(past: "?>")
                } else if peek("<!") {
                    throw QBError(.unsupported, "XML declarations inside the document are refused", subject: subject)
                } else if bytes[i] == UInt8(ascii: "<") {
                    element.children.append(try self.element(depth: depth + 1))
                } else {
                    let start = i
                    while i < bytes.count, bytes[i] != UInt8(ascii: "<") { i += 1 }
                    element.text += try decode(bytes[start..<i])
                }
            }
        }

        /// Replaces the predefined entities and character references; any other
        /// entity is an error, since none can have been declared.
        func decode(_ raw: ArraySlice<UInt8>) throws(QBError) -> String {
            guard raw.contains(UInt8(ascii: "&")) else { return String(decoding: raw, as: UTF8.self) }
            var out: [UInt8] = []
            var j = raw.startIndex
            while j < raw.endIndex {
                guard raw[j] == UInt8(ascii: "&") else { out.append(raw[j]); j += 1; continue }
                guard let semi = raw[j...].firstIndex(of: UInt8(ascii: ";")), semi - j <= 10 else {
                    throw error("unterminated entity reference")
                }
                let entity = String(decoding: raw[(j + 1)..<semi], as: UTF8.self)
                switch entity {
                case "amp": out.append(UInt8(ascii: "&"))
                case "lt": out.append(UInt8(ascii: "<"))
                case "gt": out.append(UInt8(ascii: ">"))
                case "quot": out.append(UInt8(ascii: "\""))
                case "apos": out.append(UInt8(ascii: "'"))
                default:
                    var scalar: Unicode.Scalar?
                    if entity.hasPrefix("#x"), let v = UInt32(entity.dropFirst(2), radix: 16) { scalar = Unicode.Scalar(v) }
                    else if entity.hasPrefix("#"), let v = UInt32(entity.dropFirst(1)) { scalar = Unicode.Scalar(v) }
                    guard let scalar else { throw error("undeclared entity &\(entity);") }
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                }
                j = semi + 1
            }
            return String(decoding: out, as: UTF8.self)
        }
    }
}

private func isXMLSpace(_ c: UInt8) -> Bool {
    c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09
}

/// `/`, `>`, `=`, `<`: where a tag or attribute name ends.
private let nameTerminators: Set<UInt8> = [0x2f, 0x3e, 0x3d, 0x3c]
