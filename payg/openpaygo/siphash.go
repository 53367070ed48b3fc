package openpaygo

import (
	"encoding/binary"
	"math/bits"
)

// sipHash24 is SipHash-2-4 of msg under the 16-byte key k, as a 64-bit
// integer (the reference's reading of the digest). The standard library has
// no exported SipHash; this is the algorithm of Aumasson and Bernstein, with
// the published test vectors in siphash_test.go.
func sipHash24(k *[16]byte, msg []byte) uint64 {
	key := sipKeyOf(k)
	v0, v1, v2, v3 := key.init()
	n := len(msg)
	for len(msg) >= 8 {
		v0, v1, v2, v3 = compress(v0, v1, v2, v3, binary.LittleEndian.Uint64(msg))
		msg = msg[8:]
	}
	last := uint64(n) << 56
	for i, b := range msg {
		last |= uint64(b) << (8 * i)
	}
	v0, v1, v2, v3 = compress(v0, v1, v2, v3, last)
	return finalize(v0, v1, v2, v3)
}

// sipKey is a SipHash key as its two little-endian words.
type sipKey struct{ k0, k1 uint64 }

func sipKeyOf(k *[16]byte) sipKey {
	return sipKey{binary.LittleEndian.Uint64(k[0:8]), binary.LittleEndian.Uint64(k[8:16])}
}

// init is the initial state under the key.
func (k sipKey) init() (v0, v1, v2, v3 uint64) {
	return k.k0 ^ 0x736f6d6570736575, k.k1 ^ 0x646f72616e646f6d, k.k0 ^ 0x6c7967656e657261, k.k1 ^ 0x7465646279746573
}

// sipHash8 is SipHash-2-4 of exactly 8 bytes whose little-endian reading is
// m: the chain step's one message block, without a byte slice. The state
// stays in registers (a struct behind a pointer made it 1.7x slower).
func sipHash8(k sipKey, m uint64) uint64 {
	v0, v1, v2, v3 := k.init()
	v0, v1, v2, v3 = compress(v0, v1, v2, v3, m)
	v0, v1, v2, v3 = compress(v0, v1, v2, v3, 8<<56)
	return finalize(v0, v1, v2, v3)
}

// compress absorbs one 8-byte block with two SipRounds.
func compress(v0, v1, v2, v3, m uint64) (uint64, uint64, uint64, uint64) {
	v3 ^= m
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	return v0 ^ m, v1, v2, v3
}

func finalize(v0, v1, v2, v3 uint64) uint64 {
	v2 ^= 0xff
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	return v0 ^ v1 ^ v2 ^ v3
}

func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}
