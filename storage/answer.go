package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"io"
	"sync"

	kflate "github.com/klauspost/compress/flate"

	"github.com/opmond/opmond/schema"
)

// gzipAnswer assembles one gzip member (RFC 1952) from literal bytes,
// compressed here, and the deflate streams of sealed blocks, copied as they
// are. A copied stream refers only to its own bytes, so it is valid
// wherever it starts; the literal compressor is flushed to a byte boundary
// before a copy and starts afresh after it (its window would otherwise
// refer to bytes the decoder never saw there). The CRC-32 of the whole is
// combined from the parts' (crc32Combine), so copied streams are never
// inflated.
type gzipAnswer struct {
	out  *bytes.Buffer
	lit  *kflate.Writer
	buf  []byte // literal bytes not handed to lit yet
	used bool   // lit has written since its last reset
	crc  uint32
	size uint32 // ISIZE: the length modulo 2^32
}

// answerPool keeps the literal compressor and buffer of QueryAnswer: a
// privileged page is made every few seconds by a busy collector, and
// allocating them each time grew the daemon's peak memory.
var answerPool = sync.Pool{New: func() any { return new(gzipAnswer) }}

// answerLevel is the level of the literal parts: blocks not sealed yet, so
// the newest seconds, compressed while the client waits.
const answerLevel = kflate.BestSpeed

// newGzipAnswer starts a gzip member at the end of out.
func newGzipAnswer(out *bytes.Buffer) (*gzipAnswer, error) {
	g := answerPool.Get().(*gzipAnswer)
	g.out, g.used, g.crc, g.size = out, false, 0, 0
	// ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown, as compress/gzip.
	out.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	if g.lit == nil {
		var err error
		if g.lit, err = kflate.NewWriter(out, answerLevel); err != nil {
			return nil, err
		}
	} else {
		g.lit.Reset(out)
	}
	if g.buf == nil {
		g.buf = make([]byte, 0, 64<<10)
	}
	return g, nil
}

func (g *gzipAnswer) release() {
	g.out = nil
	g.lit.Reset(io.Discard)
	g.buf = g.buf[:0]
	answerPool.Put(g)
}

func (g *gzipAnswer) literal(p []byte) error {
	g.crc = crc32.Update(g.crc, crc32.IEEETable, p)
	g.size += uint32(len(p))
	g.used = true
	_, err := g.lit.Write(p)
	return err
}

// splice appends a sealed block's deflate stream, of JSON with CRC crc and
// length n.
func (g *gzipAnswer) splice(stream []byte, crc uint32, n int) error {
	if g.used {
		if err := g.lit.Flush(); err != nil {
			return err
		}
		g.lit.Reset(g.out)
		g.used = false
	}
	g.out.Write(stream)
	g.crc = crc32Combine(g.crc, crc, int64(n))
	g.size += uint32(n)
	return nil
}

// finish ends the stream and writes the trailer.
func (g *gzipAnswer) finish() error {
	if g.used {
		if err := g.lit.Close(); err != nil {
			return err
		}
	} else {
		g.out.Write([]byte{1, 0, 0, 0xff, 0xff}) // an empty final stored block
	}
	g.out.Write(binary.LittleEndian.AppendUint32(nil, g.crc))
	g.out.Write(binary.LittleEndian.AppendUint32(nil, g.size))
	return nil
}

// crc32Combine returns the CRC-32 (IEEE) of A‖B from crcA, crcB and the
// length of B: appending n zero bytes to A is a linear map on its CRC,
// applied by repeated squaring of the one-zero-bit operator in GF(2).
func crc32Combine(crcA, crcB uint32, n int64) uint32 {
	if n <= 0 {
		return crcA
	}
	var even, odd [32]uint32
	odd[0] = 0xedb88320 // the reflected polynomial: one zero bit
	row := uint32(1)
	for i := 1; i < 32; i++ {
		odd[i] = row
		row <<= 1
	}
	gf2Square(&even, &odd) // two zero bits
	gf2Square(&odd, &even) // four
	for {
		gf2Square(&even, &odd) // one zero byte, then squares of it
		if n&1 != 0 {
			crcA = gf2Times(&even, crcA)
		}
		n >>= 1
		if n == 0 {
			break
		}
		gf2Square(&odd, &even)
		if n&1 != 0 {
			crcA = gf2Times(&odd, crcA)
		}
		n >>= 1
		if n == 0 {
			break
		}
	}
	return crcA ^ crcB
}

func gf2Times(m *[32]uint32, v uint32) uint32 {
	var s uint32
	for i := 0; v != 0; i, v = i+1, v>>1 {
		if v&1 != 0 {
			s ^= m[i]
		}
	}
	return s
}

func gf2Square(sq, m *[32]uint32) {
	for i := range m {
		sq[i] = gf2Times(m, m[i])
	}
}

// QueryAnswer runs q, which must have no party filter, and appends to out
// the gzip member of prefix, the records' JSON with all fields separated by
// commas, and suffix: the payload of a privileged operational data answer.
// Sealed blocks are copied in their answer form; the others are encoded and
// compressed here. The result and its semantics are those of Query.
func (db *DB) QueryAnswer(ctx context.Context, q Query, prefix, suffix string, out *bytes.Buffer) (QueryResult, error) {
	g, err := newGzipAnswer(out)
	if err != nil {
		return QueryResult{}, err
	}
	defer g.release()
	buf := append(g.buf[:0], prefix...)
	defer func() { g.buf = buf }()
	first := true
	pc := db.newPacer()
	flush := func() error {
		err := g.literal(buf)
		buf = buf[:0]
		pc.pace()
		return err
	}
	visit := func(r *schema.Record) error {
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = schema.AppendRecordJSON(buf, r, schema.AllFields)
		if len(buf) >= 48<<10 {
			return flush()
		}
		return nil
	}
	splice := func(stream []byte, crc uint32, n int) error {
		if !first {
			buf = append(buf, ',')
		}
		first = false
		if len(buf) > 0 {
			if err := flush(); err != nil {
				return err
			}
		}
		return g.splice(stream, crc, n)
	}
	res, err := db.query(ctx, q, visit, splice, pc)
	if err != nil {
		return res, err
	}
	buf = append(buf, suffix...)
	if err := flush(); err != nil {
		return res, err
	}
	return res, g.finish()
}
