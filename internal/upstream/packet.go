package upstream

import (
	"slices"

	"github.com/miekg/dns"
	"github.com/upstreamtier/upstreamtier/internal/dnspool"
)

// Packet is a query as it goes to an upstream: packed, with what its
// answer is checked against on the bytes.
type Packet struct {
	wire []byte       // the query packed; an attempt writes its ID into the first two bytes
	size uint16       // the client's buffer size
	ask  dns.Question // the question as the client wrote it
	qend int          // end of the question section in wire; 0 if not found
}

// NewPacket returns the packet of the packed query wire, whose one
// question is ask, for a client whose buffer holds size bytes.
func NewPacket(wire []byte, size uint16, ask dns.Question) Packet {
	return Packet{wire: wire, size: size, ask: ask, qend: dnspool.QuestionEnd(wire)}
}

// Clone returns the packet with its own copy of the wire, for an attempt
// that runs beside others.
func (p Packet) Clone() Packet {
	p.wire = slices.Clone(p.wire)
	return p
}
