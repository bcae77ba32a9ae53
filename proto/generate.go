// Package proto holds spectora-stream's message schemas (spectora/v1) and the Go
// code generated from them. The generated package is
// github.com/spectora-stream/spectora-stream/proto/spectora/v1.
//
// Regenerate after editing a .proto file with `go generate ./proto` from the
// repository root; it needs only Go (buf and protoc-gen-go are pinned in tools/go.mod).
package proto

//go:generate go tool -modfile=../tools/go.mod buf lint
//go:generate go tool -modfile=../tools/go.mod buf generate
