package storage

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// VerifyFile opens the database file at path read-only, which makes bbolt
// check its meta pages, and checks that it is an opmond database of this
// format. It is a quick test of a backup copy, not a full page check.
func VerifyFile(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("not an opmond database (no meta bucket)")
		}
		if f := string(meta.Get(metaFormat)); f != formatString() {
			return fmt.Errorf("database format %q, not %q", f, formatString())
		}
		return nil
	})
}
