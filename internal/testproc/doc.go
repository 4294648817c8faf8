// Package testproc is for tests only: the pieces tests share to drive real
// processes (binaries built from the working tree, the local Azure run as
// azuresim, terraform, jitd). It lives in non-test files because _test.go
// files cannot be imported from another package; nothing outside tests may
// import it.
package testproc
