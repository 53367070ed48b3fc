package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestBucketPerKey(t *testing.T) {
	k := New(1, 2, 10)
	now := time.Now()
	for i := 0; i < 2; i++ {
		if ok, _ := k.Take("a", now); !ok {
			t.Fatalf("take %d of a burst of 2 refused", i+1)
		}
	}
	ok, wait := k.Take("a", now)
	if ok || wait <= 0 || wait > time.Second {
		t.Errorf("third take: ok %v, wait %v; want a refusal with a wait up to 1s", ok, wait)
	}
	if ok, _ := k.Take("b", now); !ok {
		t.Error("another key was refused: buckets are not per key")
	}
	if ok, _ := k.Take("a", now.Add(1100*time.Millisecond)); !ok {
		t.Error("a refilled bucket was refused")
	}
}

// A caller with many keys evicts the least recently used one at a time; a
// busy key keeps its state (an emptied bucket stays empty).
func TestEvictsLeastRecentlyUsed(t *testing.T) {
	k := New(0.001, 1, 100)
	now := time.Now()
	if ok, _ := k.Take("busy", now); !ok {
		t.Fatal("first take refused")
	}
	for i := 0; i < 1000; i++ {
		k.Take(fmt.Sprintf("spray-%d", i), now)
		k.Take("busy", now) // keeps it recently used
	}
	if k.Len() != 100 {
		t.Errorf("table holds %d keys, want its bound 100", k.Len())
	}
	if ok, _ := k.Take("busy", now); ok {
		t.Error("the busy key's empty bucket was forgotten: spraying keys reset it")
	}
	if ok, _ := k.Take("spray-0", now); !ok {
		t.Error("the least recently used key was not evicted")
	}
}

func TestHasDoesNotTake(t *testing.T) {
	k := New(1, 1, 10)
	now := time.Now()
	for i := 0; i < 3; i++ {
		if ok, _ := k.Has("a", now); !ok {
			t.Fatalf("Has %d: no token in a full bucket", i+1)
		}
	}
	k.Take("a", now)
	ok, wait := k.Has("a", now)
	if ok || wait < 900*time.Millisecond || wait > time.Second {
		t.Errorf("Has after the only token was taken: %v, wait %v; want false, about 1s", ok, wait)
	}
}
