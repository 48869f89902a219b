package qemu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Overlays are written here rather than by qemu-img: every branch makes one
// for the parent and one per child, and an empty qcow2 overlay is a few
// fixed structures, while each qemu-img run (info for the backing's size,
// then create) is a process of its own, 10–20 ms each on the machines vers
// is measured on — most of a branch's disk preparation, and for
// `--count 50` over a second. The format is QEMU's docs/interop/qcow2.txt;
// the tests check each image with `qemu-img check` and against an overlay
// qemu-img made.
//
// The layout is qemu-img's for an empty overlay: cluster 0 holds the header,
// its extensions (the backing file's format) and the backing file's name;
// cluster 1 the refcount table; cluster 2 its one refcount block; clusters
// 3… the L1 table, all zero (nothing is allocated: every read goes to the
// backing file).

const (
	qcow2ClusterBits = 16
	qcow2Cluster     = 1 << qcow2ClusterBits
	// qcow2HeaderLen is a version 3 header without optional fields.
	qcow2HeaderLen = 104
	// qcow2ExtBackingFormat is the header extension naming the backing
	// file's format.
	qcow2ExtBackingFormat = 0xE2792ACA
	// qcow2MaxBackingName is QEMU's limit on a backing file name.
	qcow2MaxBackingName = 1023
)

// imageSize is a disk image's virtual size: a qcow2 header's, or a raw
// image's file size.
func imageSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var hdr [32]byte
	n, _ := f.ReadAt(hdr[:], 0)
	if n < 4 || !bytes.Equal(hdr[:4], qcow2Magic) {
		st, err := f.Stat()
		if err != nil {
			return 0, err
		}
		return st.Size(), nil
	}
	if n < len(hdr) {
		return 0, fmt.Errorf("%s: qcow2 header cut short", path)
	}
	if v := binary.BigEndian.Uint32(hdr[4:8]); v != 2 && v != 3 {
		return 0, fmt.Errorf("%s: qcow2 version %d", path, v)
	}
	return int64(binary.BigEndian.Uint64(hdr[24:32])), nil
}

// writeOverlay creates path as an empty qcow2 (version 3) image of size
// bytes (rounded up to whole sectors, as qemu-img does) on backing, of
// format backingFmt. path must not exist; on failure nothing is left.
func writeOverlay(path, backing, backingFmt string, size int64) (err error) {
	size = (size + 511) / 512 * 512
	if backing == "" || len(backing) > qcow2MaxBackingName || backingFmt == "" || len(backingFmt) > 16 || size <= 0 {
		return fmt.Errorf("%w: overlay of %d bytes on %q (%s)", ErrInvalid, size, backing, backingFmt)
	}
	img := overlayImage(backing, backingFmt, size)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return err
	}
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	_, err = f.Write(img)
	return err
}

// overlayImage is the whole file of an empty overlay (see the layout
// above).
func overlayImage(backing, backingFmt string, size int64) []byte {
	// One L2 table (one cluster of 8-byte entries) maps that many bytes.
	l2Span := int64(qcow2Cluster) * (qcow2Cluster / 8)
	l1Entries := (size + l2Span - 1) / l2Span
	l1Clusters := (l1Entries*8 + qcow2Cluster - 1) / qcow2Cluster
	const refTable, refBlock, l1Table = 1 * qcow2Cluster, 2 * qcow2Cluster, 3 * qcow2Cluster
	clusters := 3 + l1Clusters
	img := make([]byte, clusters*qcow2Cluster)

	be := binary.BigEndian
	h := img[:qcow2HeaderLen]
	copy(h[0:4], qcow2Magic)
	be.PutUint32(h[4:], 3)                 // version
	be.PutUint32(h[20:], qcow2ClusterBits) // cluster_bits
	be.PutUint64(h[24:], uint64(size))     // size
	be.PutUint32(h[32:], 0)                // crypt_method
	be.PutUint32(h[36:], uint32(l1Entries))
	be.PutUint64(h[40:], l1Table)
	be.PutUint64(h[48:], refTable)
	be.PutUint32(h[56:], 1) // refcount_table_clusters
	// nb_snapshots, snapshots_offset, the feature bits: 0.
	be.PutUint32(h[96:], 4) // refcount_order: 16-bit refcounts
	be.PutUint32(h[100:], qcow2HeaderLen)

	// Extensions: the backing format, then the end; each padded to 8.
	ext := img[qcow2HeaderLen:]
	be.PutUint32(ext[0:], qcow2ExtBackingFormat)
	be.PutUint32(ext[4:], uint32(len(backingFmt)))
	copy(ext[8:], backingFmt)
	end := 8 + (len(backingFmt)+7)/8*8
	// ext[end:end+8] is zero: the end-of-extensions marker.
	nameOff := qcow2HeaderLen + end + 8
	copy(img[nameOff:], backing)
	be.PutUint64(h[8:], uint64(nameOff))
	be.PutUint32(h[16:], uint32(len(backing)))

	// The refcount table points at the one block, which counts every
	// cluster of the file once.
	be.PutUint64(img[refTable:], refBlock)
	for i := range clusters {
		be.PutUint16(img[refBlock+2*i:], 1)
	}
	return img
}
