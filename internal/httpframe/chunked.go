package httpframe

// Limits of a chunked body's lines.
const (
	maxChunkLine = 4096    // a size line with its extensions
	maxTrailers  = 1 << 16 // the trailer section
)

type chunkState int

const (
	stSize        chunkState = iota // hex digits of a chunk size
	stSizeWS                        // whitespace after the size, up to CR
	stExt                           // ;extensions up to CR
	stSizeLF                        // the LF after the size line's CR
	stData                          // the chunk's bytes
	stDataCR                        // the CR after a chunk's data
	stDataLF                        // and its LF
	stTrailer                       // the start of a trailer line (or the final CRLF)
	stTrailerLine                   // inside a trailer line
	stTrailerLF                     // the LF of a trailer line
	stEndLF                         // the LF of the final blank line
	stDone
)

// Chunks follows a chunked body (RFC 9112 7.1) as its bytes are copied
// through unchanged, to find where it ends. Its zero value is ready for
// a body's first byte.
type Chunks struct {
	st        chunkState
	size      int64 // of the chunk being read
	digits    int
	line      int // bytes of the current size or trailer line
	trailers  int
	remaining int64
}

// Scan reads the body's next bytes b and returns how many of them belong
// to the body: all of b, or fewer when the body ends inside it (done).
// A malformed body is an Error: the connection cannot be followed
// further.
func (c *Chunks) Scan(b []byte) (n int, done bool, err error) {
	for n < len(b) {
		if c.st == stDone {
			return n, true, nil
		}
		if c.st == stData {
			k := int64(len(b) - n)
			if k > c.remaining {
				k = c.remaining
			}
			n += int(k)
			c.remaining -= k
			if c.remaining == 0 {
				c.st = stDataCR
			}
			continue
		}
		ch := b[n]
		n++
		switch c.st {
		case stSize:
			v, ok := hexVal(ch)
			switch {
			case ok:
				if c.digits == 15 {
					return n, false, bad("chunk size over 15 hex digits")
				}
				c.size = c.size<<4 | int64(v)
				c.digits++
			case c.digits == 0:
				return n, false, bad("chunk size: %q is not a hex digit", ch)
			case ch == ';':
				c.st = stExt
			case ch == ' ' || ch == '\t':
				// Only before the line's end: net/http reads "5 ;x" as a
				// bad size, and a proxy must frame as the app does.
				c.st = stSizeWS
			case ch == '\r':
				c.st = stSizeLF
			default:
				return n, false, bad("chunk size line: %q", ch)
			}
		case stSizeWS:
			switch ch {
			case ' ', '\t':
			case '\r':
				c.st = stSizeLF
			default:
				return n, false, bad("chunk size line: %q after whitespace", ch)
			}
		case stExt:
			switch {
			case ch == '\r':
				c.st = stSizeLF
			case ch == '\n' || (ch < ' ' && ch != '\t') || ch == 0x7f:
				return n, false, bad("chunk extension: a control character")
			}
		case stSizeLF:
			if ch != '\n' {
				return n, false, bad("chunk size line: CR without LF")
			}
			c.line, c.digits = 0, 0
			if c.size == 0 {
				c.st = stTrailer
			} else {
				c.st, c.remaining, c.size = stData, c.size, 0
			}
			continue
		case stDataCR:
			if ch != '\r' {
				return n, false, bad("chunk data longer than its size")
			}
			c.st = stDataLF
		case stDataLF:
			if ch != '\n' {
				return n, false, bad("chunk data: CR without LF")
			}
			c.st = stSize
			continue
		case stTrailer:
			if ch == '\r' {
				c.st = stEndLF
			} else if ch == '\n' || ch == ' ' || ch == '\t' || ch < ' ' {
				return n, false, bad("trailer line: %q", ch)
			} else {
				c.st = stTrailerLine
			}
		case stTrailerLine:
			switch {
			case ch == '\r':
				c.st = stTrailerLF
			case ch == '\n' || ch == 0:
				return n, false, bad("trailer line: a bare LF or NUL")
			}
		case stTrailerLF:
			if ch != '\n' {
				return n, false, bad("trailer line: CR without LF")
			}
			c.st, c.line = stTrailer, 0
			continue
		case stEndLF:
			if ch != '\n' {
				return n, false, bad("chunked body: CR without LF at its end")
			}
			c.st = stDone
			return n, true, nil
		}
		c.line++
		if c.st == stTrailer || c.st == stTrailerLine || c.st == stTrailerLF {
			c.trailers++
			if c.trailers > maxTrailers {
				return n, false, bad("trailers over %d bytes", maxTrailers)
			}
		} else if c.line > maxChunkLine {
			return n, false, bad("chunk size line over %d bytes", maxChunkLine)
		}
	}
	return n, c.st == stDone, nil
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
