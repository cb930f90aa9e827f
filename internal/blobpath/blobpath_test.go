package blobpath

import "testing"

const hex = "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"

func TestData(t *testing.T) {
	for _, tc := range []struct {
		path string
		blob string
		ok   bool
	}{
		{Root + "/sha256/ab/" + hex + "/data", "sha256/" + hex, true},
		{Root + "/sha512/ab/" + hex + "/data", "sha512/" + hex, true},
		{Root + "/sha256/ac/" + hex + "/data", "", false}, // prefix does not match
		{Root + "/sha256/ab/" + hex, "", false},           // the directory, not the data
		{Root + "/sha256/ab/" + hex + "/data/x", "", false},
		{"/docker/registry/v2/repositories/a/_layers/sha256/" + hex + "/link", "", false},
		{Root + "//ab/" + hex + "/data", "", false},
	} {
		b, ok := Data(tc.path)
		if b != tc.blob || ok != tc.ok {
			t.Errorf("Data(%q) = %q, %t; want %q, %t", tc.path, b, ok, tc.blob, tc.ok)
		}
		if ok && DataPath(b) != tc.path {
			t.Errorf("DataPath(%q) = %q, want %q", b, DataPath(b), tc.path)
		}
	}
}

func TestDeleted(t *testing.T) {
	dir := Root + "/sha256/ab/" + hex
	for _, tc := range []struct {
		path  string
		blob  string
		scope Scope
	}{
		{dir, "sha256/" + hex, One},
		{dir + "/data", "sha256/" + hex, One},
		{dir + "/other", "", None},
		{Root + "/sha256/ab", "", Many},
		{Root + "/sha256", "", Many},
		{Root, "", Many},
		{"/docker", "", Many},
		{"/", "", Many},
		{"/docker/registry/v2/repositories/a", "", None},
		{"/docker/registry/v2/blobsx", "", None},
	} {
		b, s := Deleted(tc.path)
		if b != tc.blob || s != tc.scope {
			t.Errorf("Deleted(%q) = %q, %d; want %q, %d", tc.path, b, s, tc.blob, tc.scope)
		}
		if s == Many && !Covers(tc.path, dir) {
			t.Errorf("Covers(%q, %q) = false for a path that removes many blobs", tc.path, dir)
		}
	}
	if Covers(Root+"/sha256/ac", dir) {
		t.Error("a prefix directory covers a blob of another prefix")
	}
}
