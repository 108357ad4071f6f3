package layer

import "sync"

// genMap is a map bounded by generations: when the current generation is
// full it becomes the old one and the previous old one is dropped. A key
// found in the old generation moves back to the current one, so entries in
// use stay and entries unused for a whole generation are forgotten. Safe
// for concurrent use.
type genMap[K comparable, V any] struct {
	size int // entries per generation

	mu       sync.Mutex
	cur, old map[K]V
}

func (g *genMap[K, V]) put(k K, v V) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.putLocked(k, v)
}

func (g *genMap[K, V]) putLocked(k K, v V) {
	if g.cur == nil {
		g.cur = map[K]V{}
	}
	if len(g.cur) >= g.size {
		g.old, g.cur = g.cur, map[K]V{}
	}
	g.cur[k] = v
}

func (g *genMap[K, V]) get(k K) (V, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if v, ok := g.cur[k]; ok {
		return v, true
	}
	v, ok := g.old[k]
	if ok {
		delete(g.old, k)
		g.putLocked(k, v)
	}
	return v, ok
}
