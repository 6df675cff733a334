package storage

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sync"
	"time"
	"unsafe"

	kflate "github.com/klauspost/compress/flate"
	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
)

// A sealed block (block version 2) holds its records in their answer form:
// the JSON objects of a getSecurityServerOperationalData answer with all
// fields, comma-separated, as a raw deflate stream that ends on a byte
// boundary (a sync flush) and is not final. A privileged answer is made of
// whole seconds, so of whole blocks, and its gzip payload is the
// concatenation of the blocks' streams between a gzip header and a trailer
// whose CRC-32 is combined from the blocks' (answer.go): no JSON encoding
// and no compression per query, and the streams are made once, at a far
// better compression level than a query could afford.
//
//	header: version byte (blockVersionSealed)
//	        uvarint record count, uvarint length of the JSON, the party
//	        hashes and minute keys as in version 1
//	        CRC-32 (IEEE) of the JSON, 4 bytes big-endian
//	        tag width w (1 or 2), then per record its client's and its
//	        provider's position in the party hashes plus one (0: none),
//	        w bytes each, big-endian
//	        chunks n, 2 bytes big-endian
//	body:   the deflate stream's start; the rest is in n chunks of
//	        bucketSealed (key: block key || chunk number)
//
// Values are at most sealChunk bytes: sealing frees the pages of the
// version 1 blocks it replaces, runs of about ten 1 KiB pages, and values
// that fit such runs reuse them at once (a sealed block in one value, of
// about 95 pages, never would: the file grew by what it sealed).
//
// The tags let a filtered query find the records that may match without
// parsing any JSON (matchSealed).
//
// Blocks are written in version 1 (the store path must stay cheap) and
// sealed later, off the store's critical path, by the sealer (below),
// which also merges the small blocks of one second: the longer a deflate
// stream, the better it compresses, and the fewer block values, the less
// bbolt's page rounding costs.
const blockVersionSealed = 2

// sealLevel is the deflate level of sealed blocks: the payload of an answer
// is made once and sent many times, over real networks.
const sealLevel = flate.BestCompression

// sealChunk is the largest value of a sealed block: with its key and
// bbolt's headers, 8 pages of 1 KiB.
const sealChunk = 7 << 10

// sealBuf holds the scratch of encodeSealed, the deflate writer included
// (about 1 MB at level 9: a pool would lose it at every garbage
// collection, and one sealer uses one).
type sealBuf struct {
	w       *flate.Writer
	recs    []schema.Record
	bodies  []byte
	json    []byte
	ends    []int
	out     bytes.Buffer
	parties []uint64
	minutes []uint64
}

// encodeSealed encodes recs, all of monitoringDataTs ts, as a sealed block:
// its value and the chunks of its stream. ok is false when a record would
// not read back identical from its JSON (a string with invalid UTF-8, say):
// such records stay in version 1.
func (sb *sealBuf) encodeSealed(recs []schema.Record, ts int64) (val []byte, chunks [][]byte, ok bool, err error) {
	js, ends := sb.json[:0], sb.ends[:0]
	for i := range recs {
		r := recs[i]
		r.SetInt(schema.FMonitoringDataTs, ts)
		if i > 0 {
			js = append(js, ',')
		}
		js = schema.AppendRecordJSON(js, &r, schema.AllFields)
		ends = append(ends, len(js))
	}
	sb.json, sb.ends = js, ends
	start := 0
	for i := range recs {
		back, err := schema.DecodeRecord(js[start:ends[i]], schema.DecodeOptions{})
		if err != nil || !sameRecord(&back, &recs[i]) {
			return nil, nil, false, nil
		}
		start = ends[i] + 1
	}
	parties, minutes := blockKeys(recs, sb.parties[:0], sb.minutes[:0])
	sb.parties, sb.minutes = parties, minutes
	sb.out.Reset()
	if sb.w == nil {
		if sb.w, err = flate.NewWriter(&sb.out, sealLevel); err != nil {
			return nil, nil, false, err
		}
	}
	w := sb.w
	w.Reset(&sb.out)
	if _, err := w.Write(js); err != nil {
		return nil, nil, false, err
	}
	if err := w.Flush(); err != nil {
		return nil, nil, false, err
	}
	stream := sb.out.Bytes()
	hdr := appendHeaderKeys([]byte{blockVersionSealed}, len(recs), len(js), parties, minutes)
	hdr = binary.BigEndian.AppendUint32(hdr, crc32.ChecksumIEEE(js))
	hdr = appendTags(hdr, recs, parties)
	head := min(len(stream), max(sealChunk-len(hdr)-2, 0))
	rest := stream[head:]
	n := (len(rest) + sealChunk - 1) / sealChunk
	if n > 1<<16-1 {
		return nil, nil, false, nil // beyond any block of maxBlockRecords records
	}
	val = make([]byte, 0, len(hdr)+2+head)
	val = append(binary.BigEndian.AppendUint16(append(val, hdr...), uint16(n)), stream[:head]...)
	for len(rest) > 0 {
		c := min(len(rest), sealChunk)
		chunks = append(chunks, slices.Clone(rest[:c]))
		rest = rest[c:]
	}
	return val, chunks, true, nil
}

func chunkKey(k blockKey, i int) [blockKeyLen + 2]byte {
	var ck [blockKeyLen + 2]byte
	copy(ck[:], k[:])
	binary.BigEndian.PutUint16(ck[blockKeyLen:], uint16(i))
	return ck
}

// appendChunks appends the chunks of sealed block k (h from its value) to
// dst: after a copy of the value, dst then holds the whole block.
func appendChunks(tx *bolt.Tx, k []byte, h *blockHeader, dst []byte) ([]byte, error) {
	if h.chunks == 0 {
		return dst, nil
	}
	c := tx.Bucket(bucketSealed).Cursor()
	var bk blockKey
	copy(bk[:], k)
	first := chunkKey(bk, 0)
	i := 0
	for ck, v := c.Seek(first[:]); i < h.chunks; ck, v = c.Next() {
		want := chunkKey(bk, i)
		if !bytes.Equal(ck, want[:]) {
			return dst, fmt.Errorf("%w: sealed block %x lacks chunk %d", errCorrupt, k, i)
		}
		dst = append(dst, v...)
		i++
	}
	return dst, nil
}

// wholeBlock returns h (of block k's value) with zbody the whole stream.
func wholeBlock(tx *bolt.Tx, k []byte, h blockHeader) (blockHeader, error) {
	if !h.sealed || h.chunks == 0 {
		return h, nil
	}
	z, err := appendChunks(tx, k, &h, slices.Clone(h.zbody))
	h.zbody, h.chunks = z, 0
	return h, err
}

// appendTags appends the tag width and the records' party tags.
func appendTags(b []byte, recs []schema.Record, parties []uint64) []byte {
	w := 1
	if len(parties) >= 255 {
		w = 2
	}
	b = append(b, byte(w))
	tag := func(h uint64, ok bool) {
		t := 0
		if ok {
			i, _ := slices.BinarySearch(parties, h)
			t = i + 1
		}
		if w == 2 {
			b = append(b, byte(t>>8))
		}
		b = append(b, byte(t))
	}
	for i := range recs {
		tag(recordPartyHash(&recs[i], roleClient, schema.FClientXRoadInstance))
		tag(recordPartyHash(&recs[i], roleProvider, schema.FServiceXRoadInstance))
	}
	return b
}

// tagOf returns the tag of party hash ph in a header: its position plus
// one, or 0 (no record has it).
func (h *blockHeader) tagOf(ph uint64) int {
	n := len(h.parties) / 8
	lo, hi := 0, n
	for lo < hi {
		m := (lo + hi) / 2
		if binary.BigEndian.Uint64(h.parties[8*m:]) < ph {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < n && binary.BigEndian.Uint64(h.parties[8*lo:]) == ph {
		return lo + 1
	}
	return 0
}

// recordTags returns the client and provider tags of record i.
func (h *blockHeader) recordTags(i int) (client, provider int) {
	if h.tagW == 2 {
		t := h.tags[4*i:]
		return int(t[0])<<8 | int(t[1]), int(t[2])<<8 | int(t[3])
	}
	return int(h.tags[2*i]), int(h.tags[2*i+1])
}

// sameRecord reports whether a record read back from JSON equals the
// stored one (which lacks monitoringDataTs, the block key's).
func sameRecord(back, r *schema.Record) bool {
	has := r.Has.Without(schema.FMonitoringDataTs)
	if back.Has != has {
		return false
	}
	for f := schema.Field(1); f < schema.NumFields; f++ {
		if !has.Has(f) {
			continue
		}
		slot := fieldSlot[f]
		if fieldKind[f] == schema.KindString {
			if back.Strs[slot] != r.Strs[slot] {
				return false
			}
		} else if back.Ints[slot] != r.Ints[slot] {
			return false
		}
	}
	return true
}

var inflaterPool sync.Pool

// inflater returns a pooled reader of the raw deflate stream z; put it
// back in inflaterPool after use.
func inflater(z []byte) (io.ReadCloser, error) {
	src := bytes.NewReader(z)
	r, _ := inflaterPool.Get().(io.ReadCloser)
	if r == nil {
		return kflate.NewReader(src), nil
	}
	return r, r.(kflate.Resetter).Reset(src, nil)
}

// eachSealedRecord inflates the JSON of sealed block h through a small
// window (a block's JSON is about 1 MB) and calls fn with each record i for
// which want(i) holds (every record when want is nil), its JSON valid only
// during the call. Records are found by recordSep; the count and the JSON's
// length and CRC-32 are checked. win is scratch, returned for reuse.
func eachSealedRecord(h *blockHeader, win []byte, want func(i int) bool, fn func(i int, js []byte) error) ([]byte, error) {
	r, err := inflater(h.zbody)
	if err != nil {
		return win, err
	}
	defer inflaterPool.Put(r)
	win = win[:0]
	if cap(win) < sealWindow {
		win = make([]byte, 0, sealWindow)
	}
	var crc uint32
	read, i := 0, 0
	for {
		if read < h.bodyLen {
			if len(win) == cap(win) {
				win = slices.Grow(win, cap(win)) // a record larger than the window
			}
			n := min(cap(win)-len(win), h.bodyLen-read)
			chunk := win[len(win) : len(win)+n]
			// The stream is not final: reading stops at the JSON's length.
			if _, err := io.ReadFull(r, chunk); err != nil {
				return win, fmt.Errorf("%w: %v", errCorrupt, err)
			}
			crc = crc32.Update(crc, crc32.IEEETable, chunk)
			read += n
			win = win[:len(win)+n]
		}
		// The complete records in the window; the last one ends the JSON.
		p := 0
		for p < len(win) {
			end := len(win)
			if e := bytes.Index(win[p:], recordSep); e >= 0 {
				end = p + e + 1
			} else if read < h.bodyLen {
				break
			}
			if i >= h.count {
				return win, fmt.Errorf("%w: sealed record count", errCorrupt)
			}
			if want == nil || want(i) {
				if err := fn(i, win[p:end]); err != nil {
					return win, err
				}
			}
			i++
			p = min(end+1, len(win))
		}
		win = win[:copy(win, win[p:])]
		if read == h.bodyLen && len(win) == 0 {
			break
		}
	}
	if crc != h.crc {
		return win, fmt.Errorf("%w: JSON checksum", errCorrupt)
	}
	if i != h.count {
		return win, fmt.Errorf("%w: sealed record count", errCorrupt)
	}
	return win, nil
}

// sealWindow is the window eachSealedRecord inflates through.
const sealWindow = 64 << 10

// decodeSealedRecord decodes the JSON of one record of a sealed block.
func decodeSealedRecord(js []byte) (schema.Record, error) {
	r, err := schema.DecodeRecord(js, schema.DecodeOptions{})
	if err != nil {
		return r, fmt.Errorf("%w: sealed record: %v", errCorrupt, err)
	}
	return r, nil
}

// sealedRecords decodes the records of sealed block h (h.count of them)
// into recs, with FMonitoringDataTs absent as from decodeBody.
func sealedRecords(h *blockHeader, recs []schema.Record) error {
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	var err error
	*bp, err = eachSealedRecord(h, *bp, nil, func(i int, js []byte) error {
		var err error
		recs[i], err = decodeSealedRecord(js)
		return err
	})
	return err
}

// sealedColumns decodes sealed block h and returns its records as a
// version 1 body in dst's storage, for the readers that need records
// rather than the answer form.
func sealedColumns(dst []byte, h *blockHeader) ([]byte, error) {
	recs := make([]schema.Record, h.count)
	if err := sealedRecords(h, recs); err != nil {
		return dst, err
	}
	return appendColumns(dst[:0], recs, nil), nil
}

// The sealer.
const (
	// sealAfter is how old a second must be before its blocks are sealed:
	// Store writes only the clock's current second.
	sealAfter = 2 // seconds
	// sealMinRecords is the fewest records sealed together: a second with
	// fewer stays in version 1 and is compressed with its neighbours at
	// query time, which compresses a few records far better than a deflate
	// stream of their own.
	sealMinRecords = 64
	// sealIdle is how often the sealer looks for work when it has none.
	sealIdle = time.Second
	// sealRoundRecords bounds the records of one sealing round (memory, and
	// the size of its commit).
	sealRoundRecords = maxBlockRecords
	// sealQueryPause is how long the sealer waits while queries run.
	sealQueryPause = 20 * time.Millisecond
	sealQueryWait  = 2 * time.Second
	// sealGateWait bounds how long a new query holds back for the sealer.
	sealGateWait = 20 * time.Millisecond
	// sealBusyPause is the sealer's pause, as a multiple of the time its
	// round took, while Store commits keep coming: sealing then takes at
	// most a fifth of a core from them. With no store traffic it pauses as
	// long as it worked.
	sealBusyPause = 4
	// Store requests come first: a round starts in a gap of sealStoreGap
	// without a Store commit (security servers send in bursts, so gaps are
	// the rule), or after sealMaxDelay without a round under load that
	// never pauses.
	sealStoreGap = 150 * time.Millisecond
	sealMaxDelay = 10 * time.Second
)

// sealOp replaces runs of version 1 blocks of one second by sealed blocks,
// in the committer's transaction.
type sealOp struct {
	runs []sealRun
}

// sealRun is consecutive version 1 blocks (keys, with their values'
// lengths to recognise them) and the sealed block that replaces them, put
// at the first block's key so that the order within the second holds.
type sealRun struct {
	keys   []blockKey
	lens   []int
	heads  []blockHeader // valid in the reading transaction only
	count  int
	val    []byte
	chunks [][]byte
}

// sealer seals the blocks of past seconds, oldest first, until Close. A
// failed round is reported to Options.OnSealError and retried later.
func (db *DB) sealer(ctx context.Context, onErr func(error)) {
	defer close(db.sealerDone)
	var pos blockKey // where the next round starts
	sb := new(sealBuf)
	lastRound := time.Now()
	for {
		for time.Since(time.Unix(0, db.lastStore.Load())) < sealStoreGap && time.Since(lastRound) < sealMaxDelay {
			select {
			case <-ctx.Done():
				return
			case <-time.After(sealStoreGap / 3):
			}
		}
		// Queries come first, for their time and so that their memory
		// and the sealer's do not add up; a steady stream of them delays
		// sealing by at most sealQueryWait.
		for i := 0; db.reading.Load() > 0 && i < int(sealQueryWait/sealQueryPause); i++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(sealQueryPause):
			}
		}
		next, did, work, err := db.sealRound(ctx, sb, &pos)
		if err != nil && ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
		pause := sealIdle
		switch {
		case did:
			lastRound = time.Now()
			pause = work
			if time.Since(time.Unix(0, db.lastStore.Load())) < time.Second {
				pause *= sealBusyPause
			}
		case err == nil && next != pos:
			pause = 0
		}
		if err == nil {
			pos = next
		}
		if pause == 0 {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}

// SealPending seals every block that can be sealed now and returns the
// number of sealed blocks written (tests and benchmarks: the daemon's
// sealer does this in the background).
func (db *DB) SealPending(ctx context.Context) (int, error) {
	if err := db.begin(); err != nil {
		return 0, err
	}
	defer db.end()
	var pos blockKey
	sb := new(sealBuf)
	n := 0
	for {
		next, did, _, err := db.sealRound(ctx, sb, &pos)
		if err != nil {
			return n, err
		}
		if did {
			n++
		}
		if next == pos {
			return n, nil
		}
		pos = next
	}
}

// sealRound seals up to sealRoundRecords records of the blocks from *pos
// on. It returns where the next round starts, whether it wrote anything
// and how long its own work took (not its waits). An Import of older
// seconds since the last round moves *pos back first.
func (db *DB) sealRound(ctx context.Context, sb *sealBuf, pos *blockKey) (next blockKey, did bool, work time.Duration, err error) {
	start := time.Now()
	limit := db.now().Unix() - sealAfter
	caughtUp := false // the round saw every block up to limit
	defer func() {
		if err != nil {
			return
		}
		if caughtUp {
			db.sealedTo.Store(limit)
		} else {
			db.sealedTo.Store(keyTs(next[:]) - 1)
		}
	}()
	if from := db.sealFrom.Swap(-1); from >= 0 && from < keyTs(pos[:]) {
		*pos = makeBlockKey(from, 0)
	}
	op := &sealOp{}
	var run sealRun
	var sealTs int64 = -1
	next = *pos
	endRun := func() error {
		r := run
		run = sealRun{}
		if r.count < sealMinRecords {
			return nil
		}
		// The records' strings point into the bodies, which are kept in
		// one reused buffer (a grown buffer leaves the older strings
		// pointing into the previous one, which they keep alive).
		recs, bodies := sb.recs[:0], sb.bodies[:0]
		defer func() {
			clear(recs)
			sb.recs, sb.bodies = recs[:0], bodies[:0]
		}()
		for i := range r.heads {
			h := &r.heads[i]
			start := len(bodies)
			out, err := appendBody(bodies, h)
			if err != nil {
				return fmt.Errorf("block %x: %w", r.keys[i], err)
			}
			bodies = out
			n := len(recs)
			recs = slices.Grow(recs, h.count)[:n+h.count]
			if err := decodeBody(unsafe.String(&bodies[start], h.bodyLen), recs[n:]); err != nil {
				return fmt.Errorf("block %x: %w", r.keys[i], err)
			}
		}
		val, chunks, ok, err := sb.encodeSealed(recs, sealTs)
		if err != nil || !ok {
			return err
		}
		r.val, r.chunks, r.heads = val, chunks, nil
		op.runs = append(op.runs, r)
		return nil
	}
	err = db.bolt.View(func(tx *bolt.Tx) error {
		defer releaseMapped(db.bolt, tx)
		c := tx.Bucket(bucketBlocks).Cursor()
		total := 0
		k, v := c.Seek(pos[:])
		for ; k != nil; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if isSpacer(k) {
				continue
			}
			ts := keyTs(k)
			if ts > limit {
				caughtUp = true
				break
			}
			if ts != sealTs {
				// A run never spans two seconds; a round ends at a
				// second's end once it has enough work.
				if err := endRun(); err != nil {
					return err
				}
				if total >= sealRoundRecords/2 {
					break
				}
			}
			sealTs = ts
			h, err := parseHeader(v)
			if err != nil {
				return fmt.Errorf("block %x: %w", k, err)
			}
			if h.sealed || run.count+h.count > maxBlockRecords {
				if err := endRun(); err != nil {
					return err
				}
			}
			if total >= sealRoundRecords {
				break
			}
			next = makeBlockKey(ts, binary.BigEndian.Uint64(k[8:])+1)
			if h.sealed {
				continue
			}
			run.keys = append(run.keys, blockKey(k))
			run.lens = append(run.lens, len(v))
			run.heads = append(run.heads, h)
			run.count += h.count
			total += h.count
		}
		caughtUp = caughtUp || k == nil
		return endRun()
	})
	work = time.Since(start)
	if err != nil || len(op.runs) == 0 {
		return next, false, work, err
	}
	// The commit waits for a moment without queries: TryLock fails while
	// one is in flight, and sealWant holds new ones back briefly (readGate)
	// so that back-to-back queries leave such moments. A query never waits
	// for another query (a Lock would make new ones wait for the slowest
	// reader in flight, a slow client of a long answer, say).
	db.sealWant.Store(true)
	defer db.sealWant.Store(false)
	for !db.sealMu.TryLock() {
		select {
		case <-ctx.Done():
			return *pos, false, work, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	defer db.sealMu.Unlock()
	if err := db.write(ctx, &writeReq{seal: op}); err != nil {
		return *pos, false, work, err
	}
	return next, true, work, nil
}

// apply replaces the op's runs whose blocks are all still there unchanged
// (a purge may have removed some meanwhile), with their index entries.
func (op *sealOp) apply(tx *bolt.Tx, pidx *partyIndexMemory, partyKeys, minKeys *[]indexKey) (blocksDelta int64, err error) {
	blocks, party, reqmin := tx.Bucket(bucketBlocks), tx.Bucket(bucketParty), tx.Bucket(bucketReqMin)
	var followers []blockKey // the last replaced key of each run
runs:
	for _, run := range op.runs {
		for i, k := range run.keys {
			v := blocks.Get(k[:])
			if len(v) != run.lens[i] || !storedVersion(v[0]) {
				continue runs
			}
		}
		for _, k := range run.keys {
			h, err := parseHeader(blocks.Get(k[:]))
			if err != nil {
				return 0, err
			}
			if err := deleteEntries(party, reqmin, k[:], &h, nil); err != nil {
				return 0, err
			}
			if err := blocks.Delete(k[:]); err != nil {
				return 0, err
			}
		}
		key := run.keys[0]
		if err := blocks.Put(key[:], run.val); err != nil {
			return 0, err
		}
		sealed := tx.Bucket(bucketSealed)
		sealed.FillPercent = 1 // sealing goes oldest first: keys append
		for i, c := range run.chunks {
			ck := chunkKey(key, i)
			if err := sealed.Put(ck[:], c); err != nil {
				return 0, err
			}
		}
		h, err := parseHeader(run.val)
		if err != nil {
			return 0, err
		}
		// Every party of a sealed block has its own entry: its sequence
		// number no longer says how many blocks of the second come before.
		if err := h.eachParty(addEntry(partyKeys, key)); err != nil {
			return 0, err
		}
		if err := h.eachMinute(addEntry(minKeys, key)); err != nil {
			return 0, err
		}
		blocksDelta += 1 - int64(len(run.keys))
		followers = append(followers, run.keys[len(run.keys)-1])
		if keyTs(key[:]) == pidx.ts {
			// Store's memory of this second's entries names replaced
			// blocks: a Store into it (a clock set back) writes anew.
			pidx.last = nil
		}
	}
	// A version 1 block after a run may have been found through the index
	// entry of a block the run replaced (partyWindow): the version 1 blocks
	// of the second within partyWindow after a run get entries of their own.
	c := blocks.Cursor()
	for _, last := range followers {
		ts, seq := keyTs(last[:]), binary.BigEndian.Uint64(last[8:])
		from := makeBlockKey(ts, seq+1)
		k, v := c.Seek(from[:])
		for ; ; k, v = c.Next() {
			if k, v = skipSpacers(c, k, v); k == nil || keyTs(k) != ts || binary.BigEndian.Uint64(k[8:]) >= seq+partyWindow {
				break
			}
			if !storedVersion(v[0]) {
				continue
			}
			h, err := parseHeader(v)
			if err != nil {
				return 0, err
			}
			if err := h.eachParty(addEntry(partyKeys, blockKey(k))); err != nil {
				return 0, err
			}
		}
	}
	return blocksDelta, nil
}

// readGate starts a read that must not see sealing happen (it reads in
// several transactions); the caller must call db.sealMu.RUnlock and
// db.reading.Add(-1) when done. While the sealer waits to commit, a new
// read holds back for at most sealGateWait.
func (db *DB) readGate() {
	for i := 0; db.sealWant.Load() && i < int(sealGateWait/time.Millisecond); i++ {
		time.Sleep(time.Millisecond)
	}
	db.sealMu.RLock()
	db.reading.Add(1)
}

func (db *DB) readDone() {
	db.reading.Add(-1)
	db.sealMu.RUnlock()
}

// SealLag is how far the sealer is behind: the age of the oldest second
// that may still hold blocks to seal, beyond the sealAfter seconds every
// second waits; 0 before the sealer's first round and without a sealer.
// Queries over seconds not sealed yet compress their records as they answer.
func (db *DB) SealLag(now time.Time) time.Duration {
	to := db.sealedTo.Load()
	if to <= 0 {
		return 0
	}
	return max(0, time.Duration(now.Unix()-sealAfter-to)*time.Second)
}

// noteImport tells the sealer that an Import wrote blocks from second ts on.
func (db *DB) noteImport(ts int64) {
	for {
		old := db.sealFrom.Load()
		if old >= 0 && old <= ts || db.sealFrom.CompareAndSwap(old, ts) {
			return
		}
	}
}

// matchSealed appends the matching records of sealed block value v to
// mw.out. The header's tags say which records may match; only those are
// parsed and checked, found by their separators in the inflated JSON.
func (mw *matchWorker) matchSealed(v []byte, f filter) error {
	h, err := parseHeader(v)
	if err != nil {
		return err
	}
	var wantC, wantP int
	if f.assoc != nil {
		wantC, wantP = h.tagOf(partyHash(roleClient, *f.assoc)), h.tagOf(partyHash(roleProvider, *f.assoc))
	}
	if f.prov != nil {
		wantP = h.tagOf(partyHash(roleProvider, *f.prov))
	}
	cand := func(i int) bool {
		c, p := h.recordTags(i)
		if f.prov != nil && p != wantP {
			return false
		}
		return f.assoc == nil || c == wantC && wantC > 0 || p == wantP && wantP > 0
	}
	last := -1
	for i := range h.count {
		if cand(i) {
			last = i
		}
	}
	if last < 0 {
		return nil
	}
	mw.body, err = eachSealedRecord(&h, mw.body, func(i int) bool { return i <= last && cand(i) }, func(_ int, js []byte) error {
		rec, err := decodeSealedRecord(js)
		if err == nil && f.match(&rec) {
			mw.out = append(mw.out, rec)
		}
		return err
	})
	return err
}

// recordSep is where one record's JSON ends and the next begins. It
// cannot occur inside a string (a quote there is escaped) and every record
// starts with a key, so it finds record boundaries without a parse.
var recordSep = []byte(`},{"`)
