package chunk

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// ChunkSize is the size of a data chunk: 64 KiB (qcow2's cluster size; a RAM page run).
const ChunkSize = 64 << 10

// Hash is the sha256 of a chunk's uncompressed bytes.
type Hash [32]byte

// Zero names a chunk of all zero bytes, whatever its length. It is never
// stored: on read it is a hole.
var Zero Hash

var (
	ErrMissing = errors.New("chunk missing")
	ErrCorrupt = errors.New("chunk corrupt") // content does not match its hash, or cannot be decompressed
)

// Sum is the Hash of data. All-zero data is not Zero: callers decide that.
func Sum(data []byte) Hash { return sha256.Sum256(data) }

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

func (h Hash) IsZero() bool { return h == Zero }

// ParseHash parses 64 hex digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("hash %q: want %d hex digits, not %d", s, 2*len(h), len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("hash %q: %w", s, err)
	}
	return h, nil
}

// MarshalText makes a Hash a hex string in JSON.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

func missing(h Hash) error { return fmt.Errorf("%w: %s", ErrMissing, h) }
