"""Evaluation harness: question sets, answer checking, methods, runs and reports."""
