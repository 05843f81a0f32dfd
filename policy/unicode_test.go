package policy

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestNFKCFoldsToASCIIAreRefused checks the firewall against Unicode's own
// data, written out by another implementation (testdata/nfkc_ascii.txt):
// every character whose compatibility normalisation holds ASCII or is empty,
// and every space or format character, is refused in a path.
func TestNFKCFoldsToASCIIAreRefused(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/nfkc_ascii.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		cp, err := strconv.ParseUint(line, 16, 32)
		if err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		n++
		path := "/a" + pctEncode(string(rune(cp))) + "b"
		if p, err := CleanPath(path); err == nil {
			t.Errorf("CleanPath(%q) (U+%04X) = %q, want it refused", path, cp, p.Match)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 1500 {
		t.Fatalf("read %d code points, the data file looks truncated", n)
	}
}

// TestOrdinaryLettersPass keeps the Unicode refusals from growing into a
// refusal of non-English paths.
func TestOrdinaryLettersPass(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"café", "über", "straße", "Ærø", "Ελλάδα", "Россия", "日本語", "한국어", "עברית", "العربية", "हिन्दी", "😀", "İstanbul", "ß"} {
		path := "/" + pctEncode(s)
		p, err := CleanPath(path)
		if err != nil || p.Match != "/"+s {
			t.Errorf("CleanPath(%q) = %q, %v; want %q accepted", path, p.Match, err, "/"+s)
		}
	}
}

func pctEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] < utf8.RuneSelf {
			b.WriteByte(s[i])
			continue
		}
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}
