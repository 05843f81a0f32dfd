package policy

import (
	"unicode"
	"unicode/utf8"
)

// Non-ASCII characters in a path (they arrive percent-encoded) are matched
// as the bytes they are, but many upstream stacks rewrite them before
// routing: .NET, Python and Java code calling Unicode compatibility
// normalisation (NFKC/NFKD) fold "／" (U+FF0F) into "/" and "ａｄｍｉｎ" into
// "admin"; Windows "best-fit" code-page conversion (the WorstFit attacks)
// turns "∕" (U+2215) into "/" and "¥" into "\" under Japanese code pages;
// trimming functions (String.Trim, str.strip) drop Unicode spaces; IDNA-style
// mappings drop default-ignorable characters. Each of these can turn a path
// that matched one route into a path of another, so a decoded path holding
// such a character is refused rather than guessed about.

// foldable lists, by block or range, the characters that compatibility
// normalisation or best-fit conversion maps to a string holding ASCII (or to
// nothing). Generated from Unicode 14 NFKC data (see
// testdata/nfkc_ascii.txt, checked by TestNFKCFoldsToASCIIAreRefused) and
// widened to whole presentation-form blocks where a block has no other
// use in a path. Sorted; searched by binary search.
var foldable = []struct{ lo, hi rune }{
	{0x00A0, 0x00A0}, // NO-BREAK SPACE
	{0x00A5, 0x00A5}, // YEN SIGN: "\" under Windows code page 932
	{0x00A8, 0x00A8}, // DIAERESIS → space + combining
	{0x00AA, 0x00AA}, // ª → a
	{0x00AD, 0x00AD}, // SOFT HYPHEN (ignorable)
	{0x00AF, 0x00AF}, // MACRON → space + combining
	{0x00B2, 0x00B4}, // ² ³ ´
	{0x00B8, 0x00BA}, // ¸ ¹ º
	{0x00BC, 0x00BE}, // ¼ ½ ¾ → 1⁄4 …
	{0x0132, 0x0133}, // Ĳ ĳ → IJ ij
	{0x013F, 0x0140}, // Ŀ ŀ → L· l·
	{0x0149, 0x0149}, // ŉ → ʼn
	{0x017F, 0x017F}, // ſ LONG S → s
	{0x01C4, 0x01CC}, // Ǆ … ǌ → DŽ, LJ, NJ …
	{0x01F1, 0x01F3}, // Ǳ ǲ ǳ → DZ
	{0x02B0, 0x02FF}, // Spacing Modifier Letters: ʰ → h, ˆ → ^, ˜ → ~ (best-fit)
	{0x034F, 0x034F}, // COMBINING GRAPHEME JOINER (ignorable)
	{0x037A, 0x037A}, // ͺ → space + combining
	{0x037E, 0x037E}, // GREEK QUESTION MARK → ";" (even under NFC)
	{0x0384, 0x0385}, // ΄ ΅ → space + combining
	{0x115F, 0x1160}, // Hangul fillers (ignorable)
	{0x17B4, 0x17B5}, // Khmer inherent vowels (ignorable)
	{0x1D2C, 0x1D6A}, // modifier and subscript Latin letters
	{0x1D78, 0x1D78}, // ᵸ
	{0x1D9B, 0x1DBF}, // modifier Latin letters
	{0x1E9A, 0x1E9A}, // ẚ → aʾ
	{0x1FBD, 0x1FBD}, // Greek spacing accents → space + combining
	{0x1FBF, 0x1FC1},
	{0x1FCD, 0x1FCF},
	{0x1FDD, 0x1FDF},
	{0x1FED, 0x1FEF},
	{0x1FFD, 0x1FFE},
	{0x2000, 0x206F}, // General Punctuation: spaces, zero-widths, bidi, "․" "‥" "…", "⁄", quotes and dashes (best-fit)
	{0x2070, 0x209F}, // Superscripts and Subscripts → digits, letters, + = ( )
	{0x20A8, 0x20A9}, // ₨ → Rs; ₩ WON SIGN: "\" under code page 949
	{0x2100, 0x218F}, // Letterlike Symbols and Number Forms: ℀ → a/c, K (Kelvin) → K, Ⅰ → I
	{0x2215, 0x2216}, // DIVISION SLASH, SET MINUS: "/" "\" (best-fit)
	{0x2460, 0x24FF}, // Enclosed Alphanumerics: ① → 1, ⒈ → "1.", Ⓐ → A
	{0x2571, 0x2573}, // box-drawing diagonals: "/" "\" (best-fit)
	{0x29F5, 0x29F5}, // REVERSE SOLIDUS OPERATOR
	{0x29F8, 0x29F9}, // BIG SOLIDUS, BIG REVERSE SOLIDUS
	{0x2A74, 0x2A76}, // ⩴ → ::=, ⩵ → ==
	{0x2C7C, 0x2C7D}, // ⱼ ⱽ
	{0x3000, 0x3000}, // IDEOGRAPHIC SPACE
	{0x309B, 0x309C}, // ゛ ゜ → space + combining
	{0x3164, 0x3164}, // HANGUL FILLER (ignorable)
	{0x3200, 0x33FF}, // Enclosed CJK Letters and Months, CJK Compatibility: ㈠ → (一), ㎏ → kg
	{0xA7F2, 0xA7F4}, // ꟲ ꟳ ꟴ
	{0xFB00, 0xFDFF}, // Alphabetic and Arabic Presentation Forms: ﬀ → ff, ﬩ → +
	{0xFE00, 0xFE6F}, // variation selectors, vertical, compatibility and small forms: ﹒ → ., ﹨ → \
	{0xFE70, 0xFEFF}, // Arabic Presentation Forms-B, ZERO WIDTH NO-BREAK SPACE (BOM)
	{0xFF00, 0xFFEF}, // Halfwidth and Fullwidth Forms: ／ → /, ． → ., ＼ → \, ％ → %
	{0xFFF0, 0xFFFF}, // Specials: interlinear annotation, U+FFFD, noncharacters
	{0x107A5, 0x107A5},
	{0x1BCA0, 0x1BCA3}, // shorthand format controls
	{0x1D400, 0x1D7FF}, // Mathematical Alphanumeric Symbols: 𝐚 → a, 𝟎 → 0
	{0x1F100, 0x1F1FF}, // Enclosed Alphanumeric Supplement: 🄀 → "0.", 🄰 → A
	{0x1FBF0, 0x1FBF9}, // segmented digits → 0–9
	{0xE0000, 0xE0FFF}, // tags and variation selectors supplement (ignorable)
}

// ambiguousRune reports a non-ASCII character that another server could
// read as ASCII, as whitespace, or as nothing (see foldable).
func ambiguousRune(r rune) bool {
	if unicode.In(r, unicode.Cc, unicode.Cf, unicode.White_Space, unicode.Other_Default_Ignorable_Code_Point) {
		return true
	}
	lo, hi := 0, len(foldable)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch {
		case r < foldable[m].lo:
			hi = m
		case r > foldable[m].hi:
			lo = m + 1
		default:
			return true
		}
	}
	return false
}

// badUnicode reports a decoded path that is not valid UTF-8 (overlong
// forms such as %c0%ae, surrogates, truncated sequences: decoders disagree
// on them, and some turn %c0%ae into ".") or holds an ambiguous character.
func badUnicode(p string) bool {
	for i := 0; i < len(p); {
		if p[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(p[i:])
		if r == utf8.RuneError && size <= 1 {
			return true
		}
		if ambiguousRune(r) {
			return true
		}
		i += size
	}
	return false
}
