package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/licet/licet/store"
)

func TestTmpSQLiteOpenRace(t *testing.T) {
	dir := t.TempDir()
	for round := 0; round < 40; round++ {
		dsn := filepath.Join(dir, fmt.Sprintf("r%d.db", round))
		var wg sync.WaitGroup
		for i := 0; i < 6; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var c interface{ Close() error }
				var err error
				if i%2 == 0 {
					c, err = store.OpenVendor(context.Background(), dsn)
				} else {
					c, err = store.OpenSite(context.Background(), dsn)
				}
				if err != nil {
					t.Error(err)
					return
				}
				c.Close()
			}()
		}
		wg.Wait()
	}
}
