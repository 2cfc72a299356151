from align.cli import main

# Guarded: the quickstart's worker processes (multiprocessing's "spawn") import this module
# again under another name, and must not run the command line a second time.
if __name__ == "__main__":
    main()
