from .cli import main

if __name__ == "__main__":  # not when a forkserver child imports it as __mp_main__
    main()
