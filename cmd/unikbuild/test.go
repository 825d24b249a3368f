package main

import "context"

func runTest(ctx context.Context, e env, args []string) error { return usageError("test: not yet") }
func runXL(ctx context.Context, e env, args []string) error   { return usageError("xl: not yet") }
func runInspect(ctx context.Context, e env, args []string) error {
	return usageError("inspect: not yet")
}
