package server

import (
	"bytes"
	"encoding/binary"
)

// Field syntax of RFC 9110 §5 and §5.6, as the connection guard checks it.

// trimOWS drops optional whitespace (SP, HTAB) around a field value.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// parseLength reads 1*DIGIT as Content-Length (RFC 9110 §8.6); a list, a
// sign or a value past 18 digits is not one.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// foldEq compares b with the lower-case ASCII s ignoring case; with
// underscore, '_' also matches '-' (the CGI-style alias some servers read
// as the same header).
func foldEq(b []byte, s string, underscore bool) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		} else if underscore && c == '_' {
			c = '-'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return true
}

// validValue accepts field-content: VCHAR, obs-text, SP and HTAB (RFC 9110
// §5.5). CR, LF, NUL and other controls are refused, never stripped.
func validValue(b []byte) bool {
	// Eight bytes at a time: a word with no byte below 0x20 and none equal
	// to 0x7f needs no closer look (values are most of a head's bytes, and
	// an 8 KiB token is one of them).
	const lo, hi, sp, del = 0x0101010101010101, 0x8080808080808080, 0x2020202020202020, 0x7f7f7f7f7f7f7f7f
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		y := x ^ del
		if ((x-sp)&^x|(y-lo)&^y)&hi != 0 && !validBytes(b[:8]) {
			return false
		}
		b = b[8:]
	}
	return validBytes(b)
}

func validBytes(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost allows the bytes net/http's own Host check allows, so nothing
// it would refuse (without our headers) gets past us.
func validHost(b []byte) bool {
	for _, c := range b {
		if !hostByte[c] {
			return false
		}
	}
	return true
}

func indexLF(b []byte) int { return bytes.IndexByte(b, '\n') }

func indexByte(b []byte, c byte) int { return bytes.IndexByte(b, c) }

// tchar is RFC 9110 §5.6.2's token alphabet.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// hostByte is the alphabet of uri-host [":" port] as net/http checks it.
var hostByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!$%&'()*+,-.:;=[]_~" {
		t[c] = true
	}
	return t
}()
