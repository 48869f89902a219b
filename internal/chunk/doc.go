// Package chunk stores the bytes of VM commits: a content-addressed,
// compressed, verified chunk store. A commit's files (RAM, device state,
// qcow2 layers, kernel) go in as blobs; what two commits share is stored
// once. It knows nothing of VMs.
//
// # Chunks and blobs
//
// A file is cut into chunks of ChunkSize (64 KiB: qcow2's cluster size, so
// an unchanged cluster of a disk layer is an unchanged chunk). A chunk is
// named by the sha256 of its bytes and stored zstd-compressed under that
// name; a chunk of all zeros is Zero and never stored, so the holes of a
// sparse file and the untouched pages of a RAM file cost nothing, and come
// back as holes.
//
// A Blob is a tree over its chunks. Leaves are data chunks; an index chunk is
// the concatenation of the hashes of up to 2048 chunks of the level below,
// and is itself a chunk, stored, compressed and deduplicated like data (an
// index of Zero hashes is Zero). The Blob holds the size, the root hash and
// the depth; positions follow from the size, so the index holds hashes only.
// One Blob value, a few dozen bytes of JSON, names any amount of data, and
// two commits of one VM share every chunk and index chunk under what did not
// change.
//
// # Verification
//
// Every read decompresses the chunk, hashes it and compares it to its name,
// and checks its length against its place in the blob. A chunk that fails is
// ErrCorrupt naming the hash; a chunk not there is ErrMissing. The store
// never returns wrong bytes, whatever happened to the disk or to an archive.
//
// # Backends
//
// A Backend holds raw chunks under their hash and nothing else: six methods,
// the seam for an object store (S3) that several hosts share. Dir is the
// local one, a file per chunk, <dir>/ab/<hash>. A file per chunk makes a
// chunk an atomic unit that needs no allocator, no compaction and no lock:
// Put writes a temp file and renames it, Delete unlinks, GC is a walk. It
// does not fsync each chunk (at thousands of chunks a commit, that would be
// the cost of the commit): Sync is one syncfs(2), which makes the data and
// the directory entries of every chunk written before it durable in one call.
// A commit writes its chunks, Syncs, and only then records its Blobs.
//
// A crash before that Sync can leave chunk files torn: renamed into place
// but empty or garbage. Nothing references them, but a later write would see
// them present and not store them again. So Dir keeps a marker, made durable
// before the first chunk after a Sync and removed by the Sync that covers
// them; if a crash leaves it, Recover (run by the Store before its first
// write) verifies the chunks written since and deletes the torn ones.
//
// # Garbage collection and archives
//
// Refs lists the chunks a blob uses; Collect deletes every chunk outside the
// live set the caller builds from them, while no write runs. Export and
// Import move blobs between stores as one tar stream of their chunks, each
// verified before it is written and again before it is stored.
package chunk
