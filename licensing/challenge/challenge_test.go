package challenge

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/licet/licet/errs"
)

func testImage(n int) []byte {
	img := make([]byte, n)
	for i := range img {
		img[i] = byte(i*7 + i>>8)
	}
	return img
}

func TestAnswerDefinition(t *testing.T) {
	ch := New()
	img := testImage(1000)
	got, err := Answer(ch.Bytes(), bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(append(append(append([]byte(nil), ch[:]...), img...), ch[:]...))
	if !bytes.Equal(got, want[:]) {
		t.Errorf("Answer = %x, want SHA-256(ch|image|ch) = %x", got, want)
	}
}

func TestSameImagePasses(t *testing.T) {
	ch := New()
	img := testImage(3<<20 + 17) // several read buffers and a partial one
	ans, err := Answer(ch.Bytes(), bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	// Reading one byte at a time must give the same answer.
	ans2, err := Answer(ch.Bytes(), iotest.OneByteReader(bytes.NewReader(img[:5000])))
	if err != nil {
		t.Fatal(err)
	}
	ans3, _ := Answer(ch.Bytes(), bytes.NewReader(img[:5000]))
	if !bytes.Equal(ans2, ans3) {
		t.Error("answer depends on how the image is read")
	}
	ok, err := Check(ch.Bytes(), ans, bytes.NewReader(img))
	if err != nil || !ok {
		t.Errorf("Check(same image) = %v, %v", ok, err)
	}
}

func TestPatchedImageFails(t *testing.T) {
	ch := New()
	img := testImage(1 << 20)
	ans, _ := Answer(ch.Bytes(), bytes.NewReader(img))
	for _, pos := range []int{0, 1 << 19, len(img) - 1} {
		patched := bytes.Clone(img)
		patched[pos] ^= 0x01
		ok, err := Check(ch.Bytes(), ans, bytes.NewReader(patched))
		if err != nil || ok {
			t.Errorf("byte %d patched: Check = %v, %v; want false", pos, ok, err)
		}
	}
	// Truncated and extended images fail too.
	for _, img2 := range [][]byte{img[:len(img)-1], append(bytes.Clone(img), 0)} {
		if ok, _ := Check(ch.Bytes(), ans, bytes.NewReader(img2)); ok {
			t.Errorf("image of %d bytes passed for one of %d", len(img2), len(img))
		}
	}
}

func TestAnswerBoundToChallenge(t *testing.T) {
	img := testImage(4096)
	a, b := New(), New()
	if a == b {
		t.Fatal("two challenges are equal")
	}
	ansA, _ := Answer(a.Bytes(), bytes.NewReader(img))
	if ok, _ := Check(b.Bytes(), ansA, bytes.NewReader(img)); ok {
		t.Error("answer for one challenge passed for another")
	}
	if ok, _ := Check(a.Bytes(), ansA, bytes.NewReader(img)); !ok {
		t.Error("answer failed for its own challenge")
	}
}

func TestMalformed(t *testing.T) {
	img := testImage(10)
	for _, ch := range [][]byte{nil, {}, make([]byte, Size-1), make([]byte, Size+1)} {
		if _, err := Answer(ch, bytes.NewReader(img)); !errs.Is(err, errs.Invalid) {
			t.Errorf("Answer with %d-byte challenge: %v; want invalid", len(ch), err)
		}
		if _, err := Check(ch, make([]byte, AnswerSize), bytes.NewReader(img)); !errs.Is(err, errs.Invalid) {
			t.Errorf("Check with %d-byte challenge: %v; want invalid", len(ch), err)
		}
	}
	ch := New()
	ans, _ := Answer(ch.Bytes(), bytes.NewReader(img))
	for _, bad := range [][]byte{nil, ans[:AnswerSize-1], append(bytes.Clone(ans), 0)} {
		if ok, err := Check(ch.Bytes(), bad, bytes.NewReader(img)); ok || err != nil {
			t.Errorf("Check with %d-byte answer = %v, %v; want false, nil", len(bad), ok, err)
		}
	}
	boom := errors.New("disk on fire")
	if _, err := Answer(ch.Bytes(), iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
}

func TestAnswerFile(t *testing.T) {
	ch := New()
	img := testImage(100000)
	path := filepath.Join(t.TempDir(), "client.exe")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := AnswerFile(ch.Bytes(), path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Answer(ch.Bytes(), bytes.NewReader(img))
	if !bytes.Equal(got, want) {
		t.Error("AnswerFile differs from Answer")
	}
	if _, err := AnswerFile(ch.Bytes(), path+".missing"); err == nil {
		t.Error("missing file: no error")
	}
}

func TestText(t *testing.T) {
	ch := New()
	b, err := json.Marshal(ch)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 2*Size+2 {
		t.Errorf("JSON form %s", b)
	}
	var back Challenge
	if err := json.Unmarshal(b, &back); err != nil || back != ch {
		t.Errorf("round trip = %v, %v", back, err)
	}
	for _, bad := range []string{"", "00", "zz" + ch.String()[2:], ch.String() + "00"} {
		if _, err := Parse(bad); !errs.Is(err, errs.Invalid) {
			t.Errorf("Parse(%q) = %v", bad, err)
		}
	}
}

func benchmarkAnswer(b *testing.B, size int) {
	img := testImage(size)
	ch := New()
	r := bytes.NewReader(img)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(img)
		if _, err := Answer(ch.Bytes(), r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAnswer64KiB measures a small image; ns/op shows the fixed cost.
func BenchmarkAnswer64KiB(b *testing.B) { benchmarkAnswer(b, 64<<10) }

// BenchmarkAnswer16MiB measures hashing throughput (MB/s).
func BenchmarkAnswer16MiB(b *testing.B) { benchmarkAnswer(b, 16<<20) }
