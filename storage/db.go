// Package storage keeps operational monitoring records in an embedded bbolt
// database file.
//
// Records are stored in blocks: the records of one Store call (or those of
// one Import call sharing a monitoringDataTs), at most maxBlockRecords each,
// compressed together (see block.go). Buckets:
//
//	meta        format version and the Stats counters
//	blocks      ts (8 bytes BE, monitoringDataTs) || seq (8 bytes BE) → block;
//	            and spacers, block key || 1 byte → empty (spacer.go)
//	party       party hash (8) || block key → empty; an entry for each
//	            distinct client and provider of a block (the hash includes
//	            the role), except that blocks of one second written by Store
//	            share an entry within partyWindow blocks (see store.go)
//	reqmin      requestInTs minute (8, sign bit flipped) || block key → empty;
//	            one entry per distinct minute of a block
//	quarantine  receivedAt (8) || seq (8) → JSON, see quarantine.go
//	sealed      block key || chunk (2 bytes BE) → the rest of a sealed
//	            block's deflate stream (seal.go)
//
// Block keys sort by monitoringDataTs and then by insertion order, so every
// write appends, and index entries of one party or minute sort by block key.
// Index hits are candidates only: records are always re-checked after
// decoding, which makes hash collisions harmless.
//
// Past seconds are sealed in the background: their blocks are rewritten in
// the answer form of a query (seal.go), which privileged answers copy
// (answer.go). The gzip member of such an answer and its combined CRC-32
// are assembled here by hand, for speed: no library splices deflate
// streams without inflating them.
package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("database closed")

// Format of the database file, stored in the meta bucket. Version 2 has
// the sparse party index, version 3 sealed blocks (seal.go), version 4
// packed blocks (uuidpack.go), version 5 spacers (spacer.go), version 6
// dictionary columns (dictcols.go). Files of an
// older version are valid files of the current one (a version 1 index has
// an entry for every block; blocks and keys of the versions they lack are
// simply absent) and are upgraded by rewriting the version, which stops
// older binaries from reading them; the sealer then seals their blocks in
// the background.
const (
	formatName    = "opmond-db"
	formatVersion = 6
)

var (
	metaFormat  = []byte("format")
	metaBlocks  = []byte("blocks")
	metaRecords = []byte("records")
	// metaQuarantined counts the quarantine bucket; databases written
	// before it existed count the bucket once, at open.
	metaQuarantined = []byte("quarantined")
)

func formatString() string { return fmt.Sprintf("%s %d", formatName, formatVersion) }

// initialMmapSize is the size of the first mapping of the file (see Open):
// 8 GiB on 64-bit platforms, 1 GiB where address space is scarce.
const initialMmapSize = 1 << (30 + 3*(^uint(0)>>63))

// pageSize is the page size of new database files (bbolt keeps a file's
// own). A block value larger than a page fills whole pages: a 100-record
// block of about 9.3 KB takes 12 KB in 4 KB pages and 10 KB in 1 KB pages,
// 9 bytes per record less on disk (BenchmarkDiskUsage: 107.6 -> 98.4 B per
// record in use) at the same store rate.
const pageSize = 1024

// Options configures a DB.
type Options struct {
	Now func() time.Time // clock for monitoringDataTs and receivedAt; nil = time.Now
	// Fault, when set, is asked before each commit's write and fsync; an
	// error fails the commit as that system call's error would (tests).
	Fault func(FaultOp) error
	// Seal starts the sealer, which rewrites the blocks of past seconds in
	// their answer form (seal.go); OnSealError hears of its failed rounds.
	Seal        bool
	OnSealError func(error)
	// OnCommit hears of every committed write transaction (metrics); it is
	// called on the committing goroutine and must be quick.
	OnCommit func(Commit)
}

// Commit describes one committed write transaction.
type Commit struct {
	Duration time.Duration // from its begin to the end of its fdatasync
	Bytes    int64         // of the pages it wrote
}

// DB is an open database. Its methods are safe for concurrent use.
type DB struct {
	path string
	bolt *bolt.DB
	now  func() time.Time

	fault    func(FaultOp) error
	onCommit func(Commit)

	memo intervalMemo // per-minute Intervals counts, see intervalmemo.go

	mu        sync.Mutex
	closed    bool
	commitErr error          // of the last commit (CommitErr)
	ops       sync.WaitGroup // calls in progress
	closing   sync.Once
	cerr      error

	// perCall makes Store and Import write in their own transaction instead
	// of handing over to the committer; kept for the benchmark comparison.
	perCall bool

	pidx partyIndexMemory
	spc  spacers // guarded by pidx.mu, see spacer.go

	// Sealing (seal.go): queries hold sealMu for reading, the sealer takes
	// it to commit.
	sealMu     sync.RWMutex
	sealFrom   atomic.Int64 // oldest second an Import wrote since the sealer looked, or -1
	lastStore  atomic.Int64 // time of the last Store commit, Unix ns
	paced      atomic.Int64 // time queries slept for stores (pacer), ns
	reading    atomic.Int32 // queries in flight: the sealer waits for none
	sealWant   atomic.Bool  // the sealer waits to commit (readGate)
	sealedTo   atomic.Int64 // every block up to this second is sealed, as far as the sealer knows (SealLag)
	sealStop   context.CancelFunc
	sealerDone chan struct{}

	reqs          chan *writeReq
	stop          chan struct{}
	committerDone chan struct{}
}

// Open opens or creates the database file at path, creating its folder
// (mode 0700) if missing. It fails after one second if another process
// holds the file.
func Open(path string, opts Options) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	// The freelist is written once, at Close, not at every commit: bbolt
	// writes the whole list of free pages with each commit, and the list
	// grows with every purge and every sealed block (100,000 free pages, 800
	// KB written per commit, after the 10-minute soak with a purge; the store
	// rate fell by half over its last minutes). A file closed cleanly opens
	// at once; after a crash bbolt rebuilds the list by walking the file at
	// open (about a second per GB from the page cache), and the pages that
	// walk mapped are handed back (releaseMapped) before the daemon serves.
	//
	// A commit that outgrows the mapping must remap, and a remap waits for
	// every open read transaction: during a backup (one read transaction
	// for the whole copy) the store requests stalled for the rest of the
	// copy, 18 s of a 20 s one, as the freelist pinned by the copy grows the
	// file. Mapping initialMmapSize up front (address space only, not
	// memory) leaves that much room before a remap is needed.
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         time.Second,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: initialMmapSize,
		PageSize:        pageSize,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open database %s: database is locked (is another opmond running?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := bdb.Update(initBuckets); err != nil {
		bdb.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	var trailing []spacerKey
	_ = bdb.View(func(tx *bolt.Tx) error {
		trailing = findSpacers(tx)
		releaseMapped(bdb, tx) // what rebuilding the freelist read, if it ran
		return nil
	})
	db := &DB{
		path:          path,
		bolt:          bdb,
		now:           opts.Now,
		fault:         opts.Fault,
		onCommit:      opts.OnCommit,
		reqs:          make(chan *writeReq),
		stop:          make(chan struct{}),
		committerDone: make(chan struct{}),
	}
	if db.now == nil {
		db.now = time.Now
	}
	db.spc.old = trailing
	db.sealFrom.Store(-1)
	go db.committer()
	if opts.Seal {
		ctx, cancel := context.WithCancel(context.Background())
		db.sealStop, db.sealerDone = cancel, make(chan struct{})
		go db.sealer(ctx, opts.OnSealError)
	}
	return db, nil
}

// initBuckets creates the buckets of a new database, or checks the format of
// an existing one.
func initBuckets(tx *bolt.Tx) error {
	names := [][]byte{bucketBlocks, bucketParty, bucketReqMin, bucketQuarantine, bucketSealed}
	if meta := tx.Bucket(bucketMeta); meta != nil {
		f := string(meta.Get(metaFormat))
		switch {
		case f == formatString():
		case f == formatName+" 1", f == formatName+" 2", f == formatName+" 3", f == formatName+" 4", f == formatName+" 5":
			if err := meta.Put(metaFormat, []byte(formatString())); err != nil {
				return err
			}
			if _, err := tx.CreateBucketIfNotExists(bucketSealed); err != nil {
				return err
			}
		case strings.HasPrefix(f, formatName+" "):
			return fmt.Errorf("database format %q is not supported (this opmond reads %q)", f, formatString())
		default:
			return errors.New("not an opmond database (unknown format)")
		}
		for _, n := range names {
			if tx.Bucket(n) == nil {
				return fmt.Errorf("database lacks bucket %q", n)
			}
		}
		if meta.Get(metaQuarantined) == nil {
			return countQuarantine(tx)
		}
		return nil
	}
	if err := tx.ForEach(func([]byte, *bolt.Bucket) error { return errors.New("not an opmond database (no meta bucket)") }); err != nil {
		return err
	}
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	if err := meta.Put(metaFormat, []byte(formatString())); err != nil {
		return err
	}
	for _, n := range names {
		if _, err := tx.CreateBucket(n); err != nil {
			return err
		}
	}
	return countQuarantine(tx)
}

// countQuarantine sets the quarantine counter from the bucket. Only opening
// a database written before the counter existed pays for the walk.
func countQuarantine(tx *bolt.Tx) error {
	n := tx.Bucket(bucketQuarantine).Stats().KeyN
	return tx.Bucket(bucketMeta).Put(metaQuarantined, binary.BigEndian.AppendUint64(nil, uint64(n)))
}

// begin registers a call so that Close waits for it.
func (db *DB) begin() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return ErrClosed
	}
	db.ops.Add(1)
	return nil
}

func (db *DB) end() { db.ops.Done() }

// Close waits for calls in progress (pending writes are committed), stops the
// committer and closes the file. It is idempotent; later calls of other
// methods return ErrClosed.
func (db *DB) Close() error {
	db.closing.Do(func() {
		db.mu.Lock()
		db.closed = true
		db.mu.Unlock()
		db.ops.Wait()
		if db.sealStop != nil {
			db.sealStop()
			<-db.sealerDone
		}
		close(db.stop)
		<-db.committerDone
		db.cerr = errors.Join(db.writeFreelist(), db.bolt.Close())
	})
	return db.cerr
}

// writeFreelist makes one last commit that writes the freelist (Open), so
// that the next Open need not walk the file.
func (db *DB) writeFreelist() error {
	db.bolt.NoFreelistSync = false
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaFormat, []byte(formatString()))
	})
	if err != nil {
		return fmt.Errorf("close database: writing the list of free pages (the next start rebuilds it): %w", err)
	}
	return nil
}

// Path returns the database file's path.
func (db *DB) Path() string { return db.path }

// Size returns the size of the database file in bytes.
func (db *DB) Size() (int64, error) {
	if err := db.begin(); err != nil {
		return 0, err
	}
	defer db.end()
	fi, err := os.Stat(db.path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Stats are counters kept in the meta bucket.
type Stats struct{ Blocks, Records, Quarantined int64 }

// Stats returns the number of stored blocks, records and quarantined
// records; it reads three counters, whatever the size of the database.
func (db *DB) Stats() (Stats, error) {
	if err := db.begin(); err != nil {
		return Stats{}, err
	}
	defer db.end()
	var s Stats
	err := db.bolt.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		s.Blocks = getCounter(meta, metaBlocks)
		s.Records = getCounter(meta, metaRecords)
		s.Quarantined = getCounter(meta, metaQuarantined)
		return nil
	})
	return s, err
}

func getCounter(meta *bolt.Bucket, key []byte) int64 {
	v := meta.Get(key)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

// addCounter adds d to a meta counter.
func addCounter(meta *bolt.Bucket, key []byte, d int64) error {
	if d == 0 {
		return nil
	}
	return meta.Put(key, binary.BigEndian.AppendUint64(nil, uint64(getCounter(meta, key)+d)))
}

// Backup writes a consistent copy of the database file to w.
func (db *DB) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := db.begin(); err != nil {
		return 0, err
	}
	defer db.end()
	var n int64
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(ctxWriter{ctx, w})
		return err
	})
	if cerr := ctx.Err(); err != nil && cerr != nil {
		err = cerr // bbolt does not wrap the writer's error
	}
	if err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	return n, nil
}

// ctxWriter stops a long copy when ctx is cancelled.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// releaseAll releases the mapping (releaseMapped) in a read transaction of
// its own.
func (db *DB) releaseAll() {
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		releaseMapped(db.bolt, tx)
		return nil
	})
}
