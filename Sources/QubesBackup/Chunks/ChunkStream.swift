/// Releases the authenticated chunks of one file, in order, to a sink: the
/// core of `qb-decrypt --chunks` (v4) and `qb-hmac --check` (v2/v3).
/// Names and order are checked by the `ChunkReader`, every chunk must belong
/// to the same file, and each is opened whole before any of it is written.
/// Key derivation dominates v4 (about 4 s and 1 GiB per chunk with Qubes'
/// parameters), so `InOrderJobs` opens several chunks at once while the
/// oldest is written: as many as the `JobPlan` made from the first chunk
/// (its scrypt parameters and size) allows. An empty stream is an error: a
/// file has at least chunk 000.
public enum ChunkStream {
    public static func release(_ chunks: ChunkReader, opener: ChunkOpener, jobs options: JobOptions, to sink: ByteSink) throws(QBError) {
        var jobs: InOrderJobs?
        var file: String?
        do throws(QBError) {
            while let chunk = try chunks.next() {
                if let file, file != chunk.name.file {
                    throw QBError(.malformed, "chunk of another file in the stream: \(chunk.name)", subject: file,
                                  hint: "select one file's chunks, e.g. qb-untar -i --tar '\(file).*'")
                }
                file = chunk.name.file
                if jobs == nil {
                    let plan = options.plan(memoryPerJob: JobPlan.memoryPerJob(scryptMemory: opener.scryptMemory(of: chunk),
                                                                               firstChunk: chunk.bytes?.count ?? 0,
                                                                               maximumChunkSize: chunks.maximumChunkSize))
                    options.planned(plan)
                    jobs = InOrderJobs(slots: JobSlots(plan: plan), limitLowered: options.lowered)
                }
                let memory = opener.memory(of: chunk)
                let handoff = ChunkHandoff(consume chunk)
                try jobs!.submit(memory: memory, { (slots) throws(QBError) -> [UInt8] in try opener.open(handoff.take(), slots: slots) },
                                 deliver: { (bytes: consuming [UInt8]) throws(QBError) in
                                     try sink.write(bytes.span.bytes)
                                     chunks.recycle(bytes)
                                 })
            }
            guard let jobs else { throw QBError(.truncated, "no chunks in the input", hint: "the selection matched nothing") }
            try jobs.drain()
        } catch {
            jobs?.cancel()
            throw error
        }
        try sink.finish()
    }
}
