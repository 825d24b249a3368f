// Command broken does not compile; unikbuild must report the compiler's
// message and leave no image behind.
package main

func main() { undefinedFunction() }
