package server

// chunkScanner follows a chunked body (RFC 9112 §7.1) byte by byte as it
// passes through, only to find where it ends and the next request begins.
// It is stricter than net/http's reader: whatever it accepts, net/http
// reads with the same length, so both agree on where the next request
// starts. What it does not accept ends the connection.
type chunkScanner struct {
	state   chunkStep
	size    uint64 // chunk-size being read, then data bytes left
	digits  int    // hex digits read
	lineLen int    // bytes of the current chunk or trailer line
	trailer int    // bytes of trailer section read
	excess  int64  // framing overhead not yet paid for by data (as net/http counts it)
}

type chunkStep uint8

const (
	ckSize         chunkStep = iota // chunk-size digits
	ckExt                           // chunk-ext up to CR
	ckSizeLF                        // LF after the size line's CR
	ckData                          // chunk-data
	ckDataCR                        // CR after chunk-data
	ckDataLF                        // LF after chunk-data
	ckTrailerStart                  // start of a trailer line or the final CRLF
	ckTrailerName                   // within a trailer field name
	ckTrailerLine                   // within a trailer field value
	ckTrailerLF                     // LF after a trailer line's CR
	ckEndLF                         // LF of the final CRLF
)

// Limits below net/http's own (a 4096-byte chunk line, trailers within its
// 4 KiB read buffer), so anything accepted here is accepted there too.
const (
	maxChunkLine    = 1024
	maxTrailerBytes = 2048
	maxChunkDigits  = 15 // < 2^60: no overflow anywhere
	// maxChunkExcess is half of net/http's limit on chunk framing not
	// matched by data (a flood of chunk extensions), so this scanner gives
	// up before net/http's reader would.
	maxChunkExcess = 8 << 10
)

// chunkResult is what feed found.
type chunkResult uint8

const (
	chunkMore chunkResult = iota // the body continues past these bytes
	chunkDone                    // the body ended at the returned offset
	chunkBad                     // malformed at the returned offset
)

// feed advances over b and reports whether the body continues, ended (n is
// the count of b's bytes that belong to it), or is malformed (n bytes
// before the bad one). It allocates nothing.
func (s *chunkScanner) feed(b []byte) (n int, res chunkResult) {
	i := 0
	for i < len(b) {
		c := b[i]
		switch s.state {
		case ckData:
			// The bulk of a body: skip it without looking.
			k := uint64(len(b) - i)
			if k > s.size {
				k = s.size
			}
			i += int(k)
			s.size -= k
			if s.size == 0 {
				s.state = ckDataCR
			}
			continue
		case ckSize:
			v, ok := hexVal(c)
			switch {
			case ok:
				if s.digits == maxChunkDigits {
					return i, chunkBad
				}
				s.size = s.size<<4 | uint64(v)
				s.digits++
			case s.digits > 0 && c == ';':
				s.state = ckExt
			case s.digits > 0 && c == '\r':
				s.state = ckSizeLF
			default:
				// Includes whitespace after the size: net/http trims it,
				// other parsers do not (RFC 9112 §7.1 has none).
				return i, chunkBad
			}
			s.lineLen++
		case ckExt:
			switch {
			case c == '\r':
				s.state = ckSizeLF
			case c < ' ' && c != '\t' || c == 0x7f:
				return i, chunkBad // includes a bare LF
			}
			s.lineLen++
		case ckSizeLF:
			if c != '\n' {
				return i, chunkBad
			}
			// The same accounting as net/http's chunked reader: the line
			// and the CRLF after the data, less 16 bytes and twice the data.
			s.excess = max(s.excess+int64(s.lineLen)+1-16-2*int64(min(s.size, 1<<40)), 0)
			if s.excess > maxChunkExcess {
				return i, chunkBad
			}
			s.lineLen, s.digits = 0, 0
			if s.size == 0 {
				s.state = ckTrailerStart
			} else {
				s.state = ckData
			}
		case ckDataCR:
			if c != '\r' {
				return i, chunkBad
			}
			s.state = ckDataLF
		case ckDataLF:
			if c != '\n' {
				return i, chunkBad
			}
			s.state = ckSize
		case ckTrailerStart:
			switch {
			case c == '\r':
				s.state = ckEndLF
			case tchar[c]:
				// A field line: no obs-fold, the name starts at once.
				s.state = ckTrailerName
			default:
				return i, chunkBad
			}
		case ckTrailerName:
			switch {
			case c == ':':
				s.state = ckTrailerLine
			case !tchar[c]:
				return i, chunkBad
			}
		case ckTrailerLine:
			switch {
			case c == '\r':
				s.state = ckTrailerLF
			case c < ' ' && c != '\t' || c == 0x7f:
				return i, chunkBad
			}
			s.lineLen++
		case ckTrailerLF:
			if c != '\n' {
				return i, chunkBad
			}
			s.state = ckTrailerStart
			s.lineLen = 0
		case ckEndLF:
			if c != '\n' {
				return i, chunkBad
			}
			*s = chunkScanner{}
			return i + 1, chunkDone
		}
		if s.lineLen > maxChunkLine {
			return i, chunkBad
		}
		if s.state >= ckTrailerStart {
			if s.trailer++; s.trailer > maxTrailerBytes {
				return i, chunkBad
			}
		}
		i++
	}
	return i, chunkMore
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
