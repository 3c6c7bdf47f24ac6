from score_sde.convert.checkpoints import main

main()
