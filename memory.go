package upstreamtier

import (
	"strings"
	"time"

	"github.com/coredns/coredns/plugin/pkg/cache"
)

// failoverMemory remembers, for a few seconds, which tiers answered a name
// and type with a failover rcode: a lame or DNSSEC-bogus domain keeps
// failing, often for several clients at once, and the next queries for it
// go straight past those tiers instead of costing each a round trip. Its
// size is bounded; when full, CoreDNS's sharded cache evicts at random.
type failoverMemory struct {
	ttl   time.Duration
	names *cache.Cache[memo]
}

// memo is what the memory holds for one name and type.
type memo struct {
	name    string // to tell hash collisions apart
	qtype   uint16
	tiers   uint64 // bit i: tier i failed the name
	expires int64  // Unix ns
}

// maxRememberedTiers is how many tiers, from the first, the memory can
// hold: one bit each.
const maxRememberedTiers = 64

func newFailoverMemory(ttl time.Duration, size int) *failoverMemory {
	return &failoverMemory{ttl: ttl, names: cache.New[memo](size)}
}

// failed returns the tiers that recently failed the name and type, as bits.
func (fm *failoverMemory) failed(name string, qtype uint16) uint64 {
	if fm == nil {
		return 0
	}
	m, ok := fm.names.Get(memoKey(name, qtype))
	if !ok || m.qtype != qtype || !strings.EqualFold(m.name, name) || time.Now().UnixNano() > m.expires {
		return 0
	}
	return m.tiers
}

// remember records that tier i answered the name and type with a failover
// rcode, and reports whether it could. Two queries remembering at once may
// lose one of the bits, which only costs a round trip later.
func (fm *failoverMemory) remember(name string, qtype uint16, i int) bool {
	if fm == nil || i >= maxRememberedTiers {
		return false
	}
	key := memoKey(name, qtype)
	m := memo{name: name, qtype: qtype}
	if old, ok := fm.names.Get(key); ok && old.qtype == qtype && strings.EqualFold(old.name, name) && time.Now().UnixNano() <= old.expires {
		m.tiers = old.tiers
	}
	m.tiers |= 1 << i
	m.expires = time.Now().Add(fm.ttl).UnixNano()
	fm.names.Add(key, m)
	return true
}

// memoKey hashes the name, in lower case, and the type with FNV-1a, without
// allocating: clients may send names in any case.
func memoKey(name string, qtype uint16) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ uint64(c)) * prime
	}
	h = (h ^ uint64(qtype>>8)) * prime
	return (h ^ uint64(qtype&0xff)) * prime
}
