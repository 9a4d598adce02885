package upstream

import (
	"encoding/binary"
	"net"
	"sync"

	"github.com/miekg/dns"
	"github.com/upstreamtier/upstreamtier/internal/dnspool"
)

// Reading an answer costs one buffer from a pool and one unpack. An answer
// whose header and question match the query on the bytes is unpacked here,
// with the client's own question, one slice for all its records, and the
// client's name for the records that point at the question (most answers:
// no name to allocate); anything else, and anything this does not expect,
// is left to dns.Msg.Unpack, whose verdict stands.

// pooledBuf is the size of the pooled read buffers: larger answers get a
// buffer of their own.
const pooledBuf = 4096

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, pooledBuf)
	return &b
}}

// Buffer returns a pooled buffer to pack a query into; give it back with
// PutBuffer once no attempt reads the packet any more.
func Buffer() *[]byte { return bufPool.Get().(*[]byte) }

// PutBuffer gives a buffer from Buffer back.
func PutBuffer(b *[]byte) { bufPool.Put(b) }

// Header bits, as dns.Msg.Unpack reads them.
const (
	bitQR = 1 << 15
	bitAA = 1 << 10
	bitTC = 1 << 9
	bitRD = 1 << 8
	bitRA = 1 << 7
	bitZ  = 1 << 6
	bitAD = 1 << 5
	bitCD = 1 << 4
)

// minRR is the size of the smallest resource record: the root name, type,
// class, TTL and an empty rdata.
const minRR = 11

// answerBlock is an answer of a few records in one allocation: the
// message, its question and its records.
type answerBlock struct {
	msg      dns.Msg
	question [1]dns.Question
	rrs      [blockRRs]dns.RR
}

// blockRRs is the number of records an answerBlock holds: an answer with
// more gets a slice of its own.
const blockRRs = 4

// unpackAnswer unpacks p, an answer to pkt.
func unpackAnswer(p []byte, pkt *Packet) (*dns.Msg, error) {
	b := new(answerBlock)
	m := &b.msg
	if unpackMatching(b, p, pkt) {
		return m, nil
	}
	*m = dns.Msg{}
	return m, m.Unpack(p)
}

// unpackMatching unpacks p into b if it is a response whose question is
// pkt's, and reports whether it did.
func unpackMatching(b *answerBlock, p []byte, pkt *Packet) bool {
	m := &b.msg
	qend := pkt.qend
	if qend == 0 || len(p) < qend {
		return false
	}
	bits := binary.BigEndian.Uint16(p[2:])
	if bits&bitQR == 0 || binary.BigEndian.Uint16(p[4:]) != 1 || !dnspool.SameQuestion(p[12:qend], pkt.wire[12:qend]) {
		return false
	}
	an := int(binary.BigEndian.Uint16(p[6:]))
	ns := int(binary.BigEndian.Uint16(p[8:]))
	ar := int(binary.BigEndian.Uint16(p[10:]))
	total := an + ns + ar
	if total > (len(p)-qend)/minRR { // the counts lie
		return false
	}

	m.Id = binary.BigEndian.Uint16(p)
	m.Response = true
	m.Opcode = int(bits>>11) & 0xF
	m.Authoritative = bits&bitAA != 0
	m.Truncated = bits&bitTC != 0
	m.RecursionDesired = bits&bitRD != 0
	m.RecursionAvailable = bits&bitRA != 0
	m.Zero = bits&bitZ != 0
	m.AuthenticatedData = bits&bitAD != 0
	m.CheckingDisabled = bits&bitCD != 0
	m.Rcode = int(bits & 0xF)
	b.question[0] = pkt.ask
	m.Question = b.question[:1:1]
	if total == 0 {
		return true
	}

	var rrs []dns.RR
	if total <= blockRRs {
		rrs = b.rrs[:total]
	} else {
		rrs = make([]dns.RR, total)
	}
	off := qend
	for i := range rrs {
		var ok bool
		if rrs[i], off, ok = unpackRR(p, off, pkt.ask.Name); !ok {
			return false
		}
	}
	m.Answer = section(rrs, 0, an)
	m.Ns = section(rrs, an, an+ns)
	m.Extra = section(rrs, an+ns, total)
	if opt := m.IsEdns0(); opt != nil {
		m.Rcode |= opt.ExtendedRcode()
	}
	return true
}

// unpackRR unpacks the record at off; a record named by a pointer to the
// question gets qname as its name. Records of type A and AAAA, and an OPT
// without options, are built here in one allocation each; the rest by
// dns.UnpackRRWithHeader.
func unpackRR(p []byte, off int, qname string) (dns.RR, int, bool) {
	var name string
	switch {
	case off+2 <= len(p) && p[off] == 0xC0 && p[off+1] == 12:
		name, off = qname, off+2
	case off < len(p) && p[off] == 0:
		name, off = ".", off+1
	default:
		rr, off, err := dns.UnpackRR(p, off)
		return rr, off, err == nil
	}
	if off+10 > len(p) {
		return nil, 0, false
	}
	h := dns.RR_Header{
		Name:     name,
		Rrtype:   binary.BigEndian.Uint16(p[off:]),
		Class:    binary.BigEndian.Uint16(p[off+2:]),
		Ttl:      binary.BigEndian.Uint32(p[off+4:]),
		Rdlength: binary.BigEndian.Uint16(p[off+8:]),
	}
	off += 10
	end := off + int(h.Rdlength)
	if end > len(p) {
		return nil, 0, false
	}
	switch {
	case h.Rrtype == dns.TypeA && h.Rdlength == net.IPv4len:
		r := &aRecord{}
		r.rr.Hdr = h
		copy(r.ip[:], p[off:end])
		r.rr.A = r.ip[:]
		return &r.rr, end, true
	case h.Rrtype == dns.TypeAAAA && h.Rdlength == net.IPv6len:
		r := &aaaaRecord{}
		r.rr.Hdr = h
		copy(r.ip[:], p[off:end])
		r.rr.AAAA = r.ip[:]
		return &r.rr, end, true
	case h.Rrtype == dns.TypeOPT && h.Rdlength == 0:
		return &dns.OPT{Hdr: h}, end, true
	}
	rr, off, err := dns.UnpackRRWithHeader(h, p[:end], off)
	return rr, off, err == nil
}

// aRecord and aaaaRecord are an address record with room for its address.
type aRecord struct {
	rr dns.A
	ip [net.IPv4len]byte
}

type aaaaRecord struct {
	rr dns.AAAA
	ip [net.IPv6len]byte
}

// section returns rrs[lo:hi], nil when empty, with no room to grow into
// the next section.
func section(rrs []dns.RR, lo, hi int) []dns.RR {
	if lo == hi {
		return nil
	}
	return rrs[lo:hi:hi]
}
