package dnspool

// headerLen is the length of a DNS message header.
const headerLen = 12

// QuestionEnd returns the offset after the single, uncompressed question
// of a packed message, or 0 if it does not have one.
func QuestionEnd(msg []byte) int {
	if len(msg) < headerLen || msg[4] != 0 || msg[5] != 1 {
		return 0
	}
	off := headerLen
	for {
		if off >= len(msg) {
			return 0
		}
		l := int(msg[off])
		if l == 0 {
			break
		}
		if l > 63 { // a pointer or an extended label type
			return 0
		}
		off += 1 + l
	}
	off += 1 + 4 // the root label, type and class
	if off > len(msg) {
		return 0
	}
	return off
}

// answers reports whether the datagram p is a response whose one question
// is question, a packed question section: the name in any letter case,
// type and class the same. A nil question matches any response. So does
// an error without a question section: servers refuse so (Unbound's
// access control answers REFUSED with no question), and the plugin
// judges it by its rcode.
func answers(p, question []byte) bool {
	if len(p) < headerLen || p[2]&0x80 == 0 { // QR: a response
		return false
	}
	if question == nil || questionlessError(p) {
		return true
	}
	if p[4] != 0 || p[5] != 1 || len(p) < headerLen+len(question) {
		return false
	}
	return SameQuestion(p[headerLen:headerLen+len(question)], question)
}

// SameQuestion reports whether two packed question sections are the
// same: the name in any letter case, the type and class exactly.
func SameQuestion(a, b []byte) bool {
	if len(a) != len(b) || len(a) < 5 {
		return false
	}
	n := len(a) - 4
	for i := range n {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return string(a[n:]) == string(b[n:])
}

// questionlessError reports whether the response p has no question and an
// rcode other than NOERROR and NXDOMAIN, which must echo the question.
func questionlessError(p []byte) bool {
	rcode := p[3] & 0x0f
	return p[4] == 0 && p[5] == 0 && rcode != 0 && rcode != 3
}

// lower returns c in lower case if it is an ASCII letter: DNS names
// compare without regard to case.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
