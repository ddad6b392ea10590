import QBTools

QBTool.restore.main()
