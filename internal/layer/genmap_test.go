package layer

import "testing"

func TestGenMap(t *testing.T) {
	g := genMap[int, string]{size: 2}
	g.put(1, "a")
	g.put(2, "b")
	g.put(3, "c") // generation full: {1,2} become old
	if v, ok := g.get(1); !ok || v != "a" {
		t.Fatalf("get(1) = %q, %v: an old entry in use must stay", v, ok)
	}
	g.put(4, "d") // {3,1} full -> old; {2} dropped
	g.put(5, "e")
	if _, ok := g.get(2); ok {
		t.Error("2, unused for a whole generation, is still there")
	}
	for _, k := range []int{4, 5} { // the current generation
		if _, ok := g.get(k); !ok {
			t.Errorf("%d is gone", k)
		}
	}
}
