package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Quarantined is a record that was received but could not be stored as a
// record, kept for inspection.
type Quarantined struct {
	ReceivedAt int64 // unix seconds (set by Store from the clock; returned by ListQuarantine)
	Reason     string
	Raw        []byte // the record as received
}

// quarantineValue encodes a quarantined record as the JSON object
//
//	{"reason":"...","record":<Raw>}
//
// when Raw is valid JSON without surrounding white space (kept byte for
// byte, so it reads naturally with any JSON tool), and otherwise as
//
//	{"reason":"...","raw":"<Raw in base64>"}
//
// so that arbitrary bytes, invalid UTF-8 included, survive unchanged.
// ReceivedAt is the key's first 8 bytes.
func quarantineValue(q Quarantined) []byte {
	reason, _ := json.Marshal(q.Reason) // a string always marshals
	b := make([]byte, 0, len(reason)+len(q.Raw)*4/3+32)
	b = append(b, `{"reason":`...)
	b = append(b, reason...)
	if len(bytes.TrimSpace(q.Raw)) == len(q.Raw) && json.Valid(q.Raw) {
		b = append(b, `,"record":`...)
		b = append(b, q.Raw...)
	} else {
		raw, _ := json.Marshal(q.Raw)
		b = append(b, `,"raw":`...)
		b = append(b, raw...)
	}
	return append(b, '}')
}

func parseQuarantine(k, v []byte) (Quarantined, error) {
	var x struct {
		Reason string          `json:"reason"`
		Record json.RawMessage `json:"record"`
		Raw    []byte          `json:"raw"`
	}
	if err := json.Unmarshal(v, &x); err != nil {
		return Quarantined{}, fmt.Errorf("corrupt quarantine entry: %w", err)
	}
	q := Quarantined{ReceivedAt: keyTs(k), Reason: x.Reason, Raw: x.Raw}
	if x.Record != nil {
		q.Raw = x.Record
	}
	return q, nil
}

// listBatch is how many quarantined records one read transaction collects.
const listBatch = 512

// ListQuarantine visits the quarantined records with receivedAt in
// [from,to], oldest first. A visit error aborts and is returned.
func (db *DB) ListQuarantine(ctx context.Context, from, to int64, visit func(Quarantined) error) error {
	if err := db.begin(); err != nil {
		return err
	}
	defer db.end()
	if to < 0 || from > to {
		return nil
	}
	start := makeBlockKey(max(from, 0), 0)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var batch []Quarantined
		done := true
		err := db.bolt.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketQuarantine).Cursor()
			for k, v := c.Seek(start[:]); k != nil && keyTs(k) <= to; k, v = c.Next() {
				if len(batch) == listBatch {
					done = false
					start = blockKey(k)
					return nil
				}
				q, err := parseQuarantine(k, v)
				if err != nil {
					return err
				}
				batch = append(batch, q)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, q := range batch {
			if err := visit(q); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}
