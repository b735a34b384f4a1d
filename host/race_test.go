//go:build race

package host

// raceEnabled: the tests run with -race, under which wazero compiles
// several times slower (a 1 MB Haskell plugin: ~40 s).
func init() { raceEnabled = true }
