package gateway

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestNonceCache(t *testing.T) {
	const skew = 60
	c := newNonceCache(skew, 1<<10, 0)
	now := int64(1_800_000_000)
	if r := c.add("client-a", "nonce-0123456789", now, now); r != nonceOK {
		t.Fatalf("first use: %v", r)
	}
	if r := c.add("client-a", "nonce-0123456789", now, now+30); r != nonceReplayed {
		t.Fatalf("replay: %v", r)
	}
	if r := c.add("client-b", "nonce-0123456789", now, now); r != nonceOK {
		t.Fatalf("same nonce, other client: %v", r)
	}
	// Remembered for as long as the ts is acceptable: until ts + skew.
	if r := c.add("client-a", "nonce-0123456789", now, now+skew); r != nonceReplayed {
		t.Fatalf("replay at the edge of the window: %v", r)
	}
	// A ts at the far ends of the window, then time moving on: old buckets are reused.
	for step := range int64(100) {
		at := now + step*20
		for _, ts := range []int64{at - skew, at, at + skew} {
			nonce := fmt.Sprintf("n-%d-%d-xxxxxxxxxxx", step, ts)
			if r := c.add("client-a", nonce, ts, at); r != nonceOK {
				t.Fatalf("step %d ts %d: %v", step, ts, r)
			}
			if r := c.add("client-a", nonce, ts, at); r != nonceReplayed {
				t.Fatalf("step %d ts %d replayed: %v", step, ts, r)
			}
		}
	}
	if n := c.len(); n > 300 || n < 30 {
		t.Fatalf("%d nonces held after 100 steps of 3", n)
	}
}

func TestNonceCacheFull(t *testing.T) {
	const skew = 60
	c := newNonceCache(skew, nonceShards*4, 0) // 4 per shard
	now := int64(1_800_000_000)
	full := 0
	for i := range 2000 {
		switch c.add("client-a", fmt.Sprintf("nonce-%016d", i), now, now) {
		case nonceFull:
			full++
		case nonceReplayed:
			t.Fatal("fresh nonce refused as a replay")
		}
	}
	if full == 0 || c.len() > nonceShards*4 {
		t.Fatalf("%d refused as full, %d held", full, c.len())
	}
	// Once the ts of those nonces is out of the window, there is room again.
	later := now + skew + 16 // past the bucket of now
	for i := range 100 {
		if r := c.add("client-a", fmt.Sprintf("later-%016d", i), later, later); r == nonceFull {
			// A shard may still hold up to 4 fresh ones; try elsewhere.
			continue
		} else if r != nonceOK {
			t.Fatalf("later: %v", r)
		}
	}
	if c.len() == 0 || c.len() > nonceShards*4 {
		t.Fatalf("%d held", c.len())
	}
}

func TestNonceCacheClockBack(t *testing.T) {
	c := newNonceCache(60, 1<<10, 0)
	now := int64(1_800_000_000)
	for i := range 64 * 4 { // fill the slot of every shard far in the future
		c.add(fmt.Sprint("client-", i), "nonce-0123456789", now+1000, now+1000)
	}
	// 1000 s is 66 buckets of 15 s; pick a ts whose slot is the same.
	ts := now + 1000 - 16*15
	seenBack := false
	for i := range 64 * 4 {
		if c.add(fmt.Sprint("client-", i), "nonce-0123456789", ts, ts) == nonceClockBack {
			seenBack = true
		}
	}
	if !seenBack {
		t.Fatal("a ts far behind the buckets in use was not noticed")
	}
}

func TestNonceCacheConcurrent(t *testing.T) {
	c := newNonceCache(60, 1<<16, 0)
	now := int64(1_800_000_000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for g := range 8 {
		wg.Go(func() {
			n := 0
			for i := range 1000 {
				// Each nonce is tried by two goroutines; exactly one may win.
				if c.add("client-a", fmt.Sprintf("nonce-%08d-%d", i, g/2), now+int64(i%100), now) == nonceOK {
					n++
				}
			}
			mu.Lock()
			ok += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if ok != 4000 {
		t.Fatalf("%d accepted, want 4000", ok)
	}
}

func TestParseSignature(t *testing.T) {
	sig := strings.Repeat("A", 86) + "=="
	good := "keyid=client-0011223344556677,ts=1767225600,nonce=AAECAwQFBgcICQoLDA0ODw,sig=" + sig
	if p, problem := parseSignature(good); problem != "" || p.unix != 1767225600 || p.keyid != "client-0011223344556677" || p.sig != sig {
		t.Fatalf("%+v %s", p, problem)
	}
	if _, problem := parseSignature(" sig=" + sig + " ,\tnonce=AAECAwQFBgcICQoLDA0ODw, ts=1 ,keyid=k"); problem != "" {
		t.Fatalf("reordered, with spaces: %s", problem)
	}
	for _, bad := range []string{
		"",
		"keyid=k,ts=1,nonce=AAECAwQFBgcICQoLDA0ODw",                               // no sig
		"keyid=k,ts=1,nonce=AAECAwQFBgcICQoLDA0ODw,sig=" + sig + ",ts=2",          // twice
		"keyid=k,ts=+1,nonce=AAECAwQFBgcICQoLDA0ODw,sig=" + sig,                   // sign
		"keyid=k,ts=-1,nonce=AAECAwQFBgcICQoLDA0ODw,sig=" + sig,                   // negative
		"keyid=k,ts=1,nonce=short,sig=" + sig,                                     // short nonce
		"keyid=k,ts=1,nonce=AAECAwQFBgcICQoLDA0OD+,sig=" + sig,                    // not base64url
		"keyid=k,ts=1,nonce=AAECAwQFBgcICQoLDA0ODw,sig=" + sig[:86],               // unpadded
		"keyid=k,ts=1,nonce=AAECAwQFBgcICQoLDA0ODw,sig=" + sig + ",v=2",           // unknown field
		"keyid=,ts=1,nonce=AAECAwQFBgcICQoLDA0ODw,sig=" + sig,                     // empty keyid
		"keyid=k,ts=1,nonce=AAECAwQFBgcICQoLDA0ODw,sig=" + sig + ",garbage",       // not name=value
		"keyid=k,ts=99999999999999999999,nonce=AAECAwQFBgcICQoLDA0ODw,sig=" + sig, // too long
	} {
		if _, problem := parseSignature(bad); problem == "" {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestIsLicetHeader(t *testing.T) {
	for _, k := range []string{
		"Licet-License", "Licet-Signature", "Licet-Client-Id", "Licet-License-Id", "Licet-Client-Anything",
		"licet-client-id", "LICET_CLIENT_ID", "Licet_license-features", "Licet-License_features", "Licet_License", "Licet_Signature",
	} {
		if !isLicetHeader(k) {
			t.Errorf("%s is not recognised", k)
		}
	}
	for _, k := range []string{"Licet", "Licet-Client", "Licet-Licenses", "Licet-Other", "Content-Type", "X-Licet-Client-Id", "Licet-Signatures"} {
		if isLicetHeader(k) {
			t.Errorf("%s is taken for a Licet header", k)
		}
	}
	if got := cleanConnection([]string{"keep-alive, Licet-Client-Id", "licet_license_id,Upgrade"}); len(got) != 1 || got[0] != "keep-alive, Upgrade" {
		t.Errorf("cleanConnection: %q", got)
	}
}

// One client cannot hold more than its quota of the memory: its next nonce
// is refused while another client's is taken; once its nonces expire, its
// quota is back.
func TestNonceQuotaPerClient(t *testing.T) {
	const skew, now = 60, 1_000_000
	c := newNonceCache(skew, 1<<16, 100)
	for i := 0; i < 100; i++ {
		if r := c.add("greedy", fmt.Sprintf("nonce-%d-xxxxxxxx", i), now, now); r != nonceOK {
			t.Fatalf("nonce %d of a quota of 100: %v", i, r)
		}
	}
	if r := c.add("greedy", "one-more-xxxxxxxx", now, now); r != nonceQuota {
		t.Errorf("nonce 101: %v, want nonceQuota", r)
	}
	if r := c.add("modest", "one-more-xxxxxxxx", now, now); r != nonceOK {
		t.Errorf("another client: %v, want nonceOK", r)
	}
	later := int64(now + 3*skew)
	if r := c.add("greedy", "after-expiry-xxxx", later, later); r != nonceOK {
		t.Errorf("after its nonces left the window: %v, want nonceOK", r)
	}
	c.qmu.Lock()
	held := c.held["greedy"]
	c.qmu.Unlock()
	if held != 1 {
		t.Errorf("greedy holds %d nonces by the quota count, want 1", held)
	}
}
