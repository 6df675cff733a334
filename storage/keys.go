package storage

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
)

// Bucket names. The layout is described in the package documentation.
var (
	bucketMeta       = []byte("meta")
	bucketBlocks     = []byte("blocks")
	bucketParty      = []byte("party")
	bucketReqMin     = []byte("reqmin")
	bucketQuarantine = []byte("quarantine")
	bucketSealed     = []byte("sealed")
)

// blockKeyLen is the length of a block key: ts (8 bytes) and seq (8 bytes).
const blockKeyLen = 16

type blockKey [blockKeyLen]byte

func makeBlockKey(ts int64, seq uint64) blockKey {
	var k blockKey
	binary.BigEndian.PutUint64(k[:8], uint64(ts))
	binary.BigEndian.PutUint64(k[8:], seq)
	return k
}

// keyTs returns the monitoringDataTs of a block key (or of the last 16 bytes
// of an index key).
func keyTs(k []byte) int64 { return int64(binary.BigEndian.Uint64(k[len(k)-16:])) }

// Party roles: the hash of a party includes its role, so a provider filter
// finds only blocks where the id is a provider.
const (
	roleClient   = 'c'
	roleProvider = 'p'
)

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvByte(h uint64, b byte) uint64 { return (h ^ uint64(b)) * fnvPrime }

func fnvString(h uint64, s string) uint64 {
	for n := uint64(len(s)); ; n >>= 7 {
		if n < 0x80 {
			h = fnvByte(h, byte(n))
			break
		}
		h = fnvByte(h, byte(n)|0x80)
	}
	for i := 0; i < len(s); i++ {
		h = fnvByte(h, s[i])
	}
	return h
}

// partyHash is FNV-1a 64 over an unambiguous encoding of role and id:
// length-prefixed parts and a flag that tells a member from a subsystem
// (also from a subsystem with an empty code).
func partyHash(role byte, id schema.ClientID) uint64 {
	h := fnvByte(fnvOffset, role)
	h = fnvString(h, id.Instance)
	h = fnvString(h, id.MemberClass)
	h = fnvString(h, id.MemberCode)
	if id.HasSubsystem {
		h = fnvByte(h, 1)
		h = fnvString(h, id.Subsystem)
	} else {
		h = fnvByte(h, 0)
	}
	return h
}

// recordPartyHash hashes the party starting at field first of r, without
// building a ClientID. ok is false when the record lacks instance, class or
// code (such a record matches no id in that role).
func recordPartyHash(r *schema.Record, role byte, first schema.Field) (uint64, bool) {
	if !r.Has.Has(first) || !r.Has.Has(first+1) || !r.Has.Has(first+2) {
		return 0, false
	}
	h := fnvByte(fnvOffset, role)
	h = fnvString(h, r.Str(first))
	h = fnvString(h, r.Str(first+1))
	h = fnvString(h, r.Str(first+2))
	if r.Has.Has(first + 3) {
		h = fnvByte(h, 1)
		h = fnvString(h, r.Str(first+3))
	} else {
		h = fnvByte(h, 0)
	}
	return h, true
}

// minuteKey maps a requestInTs in ms to its minute, flipping the sign bit so
// that negative minutes sort before positive ones in big-endian keys.
func minuteKey(ms int64) uint64 { return uint64(floorDiv(ms, 60000)) ^ 1<<63 }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// addEntry returns a func that appends the index entry of a prefix (party
// hash or minute key) for block key to keys.
func addEntry(keys *[]indexKey, key blockKey) func(uint64) error {
	return func(p uint64) error {
		var e indexKey
		binary.BigEndian.PutUint64(e[:8], p)
		copy(e[8:], key[:])
		*keys = append(*keys, e)
		return nil
	}
}

// deleteEntries deletes the party and minute index entries of block key,
// whose header is h, calling minute (if set) with each minute key.
func deleteEntries(party, reqmin *bolt.Bucket, key []byte, h *blockHeader, minute func(uint64)) error {
	var ik indexKey
	copy(ik[8:], key)
	if err := h.eachParty(func(p uint64) error {
		binary.BigEndian.PutUint64(ik[:8], p)
		return party.Delete(ik[:])
	}); err != nil {
		return err
	}
	return h.eachMinute(func(m uint64) error {
		if minute != nil {
			minute(m)
		}
		binary.BigEndian.PutUint64(ik[:8], m)
		return reqmin.Delete(ik[:])
	})
}
