import QBTools

QBTool.decrypt.main()
