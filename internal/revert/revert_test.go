package revert

import (
	"reflect"
	"testing"
)

func TestFailRunsNewestFirst(t *testing.T) {
	var got []int
	r := New()
	r.Add(func() { got = append(got, 1) })
	r.Add(func() { got = append(got, 2) })
	r.Fail()
	r.Fail()
	if !reflect.DeepEqual(got, []int{2, 1}) {
		t.Fatalf("got %v", got)
	}
}

func TestSuccessForgets(t *testing.T) {
	ran := false
	r := New()
	r.Add(func() { ran = true })
	r.Success()
	r.Fail()
	if ran {
		t.Fatal("undo ran after Success")
	}
}
