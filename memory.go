package upstreamtier

import (
	"strings"
	"sync/atomic"
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
	// last is when the newest entry expires, in Unix ns: past it nothing
	// is remembered, and a query does not hash its name to find that out.
	last atomic.Int64
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
	now := time.Now().UnixNano()
	if now > fm.last.Load() {
		return 0
	}
	return fm.live(memoKey(name, qtype), name, qtype, now).tiers
}

// live returns the entry for the name and type under key, or a zero memo
// when there is none, it has expired, or the key is another name's.
func (fm *failoverMemory) live(key uint64, name string, qtype uint16, now int64) memo {
	m, ok := fm.names.Get(key)
	if !ok || m.qtype != qtype || !strings.EqualFold(m.name, name) || now > m.expires {
		return memo{}
	}
	return m
}

// remember records that tier i answered the name and type with a failover
// rcode, and reports whether it could. Two queries remembering at once may
// lose one of the bits, which only costs a round trip later.
func (fm *failoverMemory) remember(name string, qtype uint16, i int) bool {
	if fm == nil || i >= maxRememberedTiers {
		return false
	}
	key := memoKey(name, qtype)
	now := time.Now().UnixNano()
	expires := now + int64(fm.ttl)
	tiers := fm.live(key, name, qtype, now).tiers | 1<<i
	fm.names.Add(key, memo{name: name, qtype: qtype, tiers: tiers, expires: expires})
	for {
		old := fm.last.Load()
		if expires <= old || fm.last.CompareAndSwap(old, expires) {
			return true
		}
	}
}

// memoKey hashes the name, in lower case, and the type with FNV-1a, without
// allocating: clients may send names in any case.
func memoKey(name string, qtype uint16) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := range len(name) {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ uint64(c)) * prime
	}
	h = (h ^ uint64(qtype>>8)) * prime
	return (h ^ uint64(qtype&0xff)) * prime
}
